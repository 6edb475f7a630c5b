//! The pytti cutout sampler: placement formula, exact batched resampling,
//! border fills, gradients, noise and seeding.

use crate::support::{max_abs_diff, opts};
use tch::{Kind, Tensor};
use zoetrope::guidance::cutouts::{
    clip_normalize, BorderFill, Crop, CutoutSampler, CLIP_MEAN, CLIP_STD,
};
use zoetrope::rng::Rng;
use zoetrope::ErrorKind;

/// `[1, 3, h, w]` with pixel (c, y, x) = c·10000 + y·100 + x.
fn gradient_image(h: i64, w: i64) -> Tensor {
    let c = Tensor::arange(3, opts()).view([1, 3, 1, 1]) * 10000.0;
    let y = Tensor::arange(h, opts()).view([1, 1, h, 1]) * 100.0;
    let x = Tensor::arange(w, opts()).view([1, 1, 1, w]);
    (c + y + x).contiguous()
}

fn sampler(cutouts: usize, cut_pow: f64, border: f64, r: i64) -> CutoutSampler {
    CutoutSampler::new(cutouts, cut_pow, border, r).unwrap()
}

#[test]
fn sample_has_the_perceptor_shape_and_is_normalised() {
    let mut rng = Rng::new(101).unwrap();
    let s = sampler(5, 2.0, 0.25, 16);
    let image = rng.rand(&[1, 3, 40, 56]).unwrap().set_requires_grad(true);
    let out = s.sample(&image, &mut rng).unwrap();
    assert_eq!(out.size(), vec![5, 3, 16, 16]);
    assert_eq!(out.kind(), Kind::Float);

    // A constant 0.5 image without noise normalises to (0.5 − mean) / std.
    let mut quiet = s.clone();
    quiet.noise = 0.0;
    let grey = Tensor::full([1, 3, 20, 20], 0.5, opts());
    let out = quiet
        .sample_with(
            &grey,
            &[Crop {
                x: 2,
                y: 3,
                size: 10,
            }],
            &mut rng,
        )
        .unwrap();
    for c in 0..3 {
        let expected = (0.5 - CLIP_MEAN[c as usize]) / CLIP_STD[c as usize];
        let got = out.get(0).get(c);
        assert!(
            max_abs_diff(&got, &got.full_like(expected)) < 1e-5,
            "channel {c}"
        );
    }
}

#[test]
fn crop_sizes_follow_the_pytti_formula() {
    // m = 100, r = 30, cut_pow = 2: sizes lie in [floor(100·0.3²), 100] = [9, 100].
    let s = sampler(8, 2.0, 0.25, 30);
    assert_eq!(s.crop_size(0.0, 120, 100), 64); // floor(100 · 0.8²)
    assert_eq!(s.crop_size(1.0, 120, 100), 100); // 1.1 clipped to 1
    assert_eq!(s.crop_size(-3.0, 120, 100), 9); // clipped to r/m = 0.3
    assert_eq!(s.crop_size(-1.0, 120, 100), 25); // floor(100 · 0.5²)
    let s1 = sampler(8, 1.0, 0.25, 30);
    assert_eq!(s1.crop_size(0.0, 120, 100), 80);
    // r > min side: torch.clip(x, r/m, 1) is 1, every crop is the full square.
    let big_r = sampler(8, 2.0, 0.25, 224);
    for z in [-3.0, -0.5, 0.0, 2.0] {
        assert_eq!(big_r.crop_size(z, 256, 128), 128);
    }

    let mut rng = Rng::new(3).unwrap();
    let (w, h) = (120, 100);
    let s = sampler(400, 2.0, 0.25, 30);
    let (px, py) = s.padding(w, h);
    assert_eq!((px, py), (30, 25));
    let crops = s.place(w, h, &mut rng).unwrap();
    assert_eq!(crops.len(), 400);
    let mut overhang = 0;
    let mut sizes = std::collections::BTreeSet::new();
    for c in &crops {
        assert!((9..=100).contains(&c.size), "{c:?}");
        let (ox, oy) = (c.size.min(px), c.size.min(py));
        assert!(c.x >= -ox && c.x + c.size <= w + ox, "{c:?}");
        assert!(c.y >= -oy && c.y + c.size <= h + oy, "{c:?}");
        if c.x < 0 || c.y < 0 || c.x + c.size > w || c.y + c.size > h {
            overhang += 1;
        }
        sizes.insert(c.size);
    }
    assert!(
        overhang > 20,
        "only {overhang} of 400 crops hang over an edge"
    );
    assert!(sizes.len() > 30, "sizes barely vary: {sizes:?}");
    // N(0.8, 0.3) clipped at 1 puts about a quarter of the crops at full size.
    let full = crops.iter().filter(|c| c.size == 100).count();
    assert!((60..=160).contains(&full), "{full} full-size crops");

    // Clamp mode keeps every crop inside the image.
    let mut clamp = s.clone();
    clamp.fill = BorderFill::Clamp;
    for c in clamp.place(w, h, &mut rng).unwrap() {
        assert!(c.x >= 0 && c.y >= 0 && c.x + c.size <= w && c.y + c.size <= h);
    }
}

#[test]
fn whole_image_crop_reproduces_the_resized_image() {
    let mut rng = Rng::new(103).unwrap();
    let image = rng.rand(&[1, 3, 32, 32]).unwrap();
    for r in [16, 10, 32, 48] {
        let s = sampler(1, 2.0, 0.25, r);
        let out = s
            .resample(
                &image,
                &[Crop {
                    x: 0,
                    y: 0,
                    size: 32,
                }],
            )
            .unwrap();
        let expected = image.adaptive_avg_pool2d([r, r]);
        assert!(max_abs_diff(&out, &expected) < 1e-5, "r = {r}");
    }
}

#[test]
fn known_placement_returns_exact_pixels() {
    let image = gradient_image(20, 30);
    let s = sampler(1, 2.0, 0.25, 8);
    let out = s
        .resample(
            &image,
            &[Crop {
                x: 5,
                y: 3,
                size: 8,
            }],
        )
        .unwrap();
    let expected = image.narrow(2, 3, 8).narrow(3, 5, 8);
    assert_eq!(max_abs_diff(&out, &expected), 0.0);
    // Halving: each output pixel is a 2×2 mean, e.g. (0, 0) = mean of rows
    // 3–4, columns 5–6 = 350 + 5.5.
    let s = sampler(1, 2.0, 0.25, 4);
    let out = s
        .resample(
            &image,
            &[Crop {
                x: 5,
                y: 3,
                size: 8,
            }],
        )
        .unwrap();
    assert!((out.double_value(&[0, 0, 0, 0]) - 355.5).abs() < 1e-3);
    assert!((out.double_value(&[0, 2, 3, 1]) - (20000.0 + 950.0 + 7.5)).abs() < 1e-2);
}

/// Columns seen by a 6-wide crop starting 2 pixels left of a 30-wide image.
fn overhang_columns(fill: BorderFill) -> Vec<f32> {
    let image = gradient_image(20, 30);
    let mut s = sampler(1, 2.0, 0.25, 6);
    s.fill = fill;
    let out = s
        .resample(
            &image,
            &[Crop {
                x: -2,
                y: 0,
                size: 6,
            }],
        )
        .unwrap();
    Vec::<f32>::try_from(&out.get(0).get(0).get(0)).unwrap()
}

#[test]
fn overhang_is_filled_by_the_border_mode() {
    assert_eq!(BorderFill::default(), BorderFill::Mirror);
    assert_eq!(
        overhang_columns(BorderFill::Mirror),
        vec![2.0, 1.0, 0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        overhang_columns(BorderFill::Smear),
        vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        overhang_columns(BorderFill::Wrap),
        vec![28.0, 29.0, 0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        overhang_columns(BorderFill::Black),
        vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    );
    // Row 5 shows the difference between black and smear.
    let image = gradient_image(20, 30);
    let mut s = sampler(1, 2.0, 0.25, 6);
    s.fill = BorderFill::Black;
    let out = s
        .resample(
            &image,
            &[Crop {
                x: -2,
                y: 5,
                size: 6,
            }],
        )
        .unwrap();
    let row = Vec::<f32>::try_from(&out.get(0).get(0).get(0)).unwrap();
    assert_eq!(row, vec![0.0, 0.0, 500.0, 501.0, 502.0, 503.0]);

    // Clamp mode has no border: an overhanging crop is a bug, reported.
    let mut clamp = sampler(1, 2.0, 0.25, 6);
    clamp.fill = BorderFill::Clamp;
    let err = clamp
        .resample(
            &image,
            &[Crop {
                x: -2,
                y: 0,
                size: 6,
            }],
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    // A crop further out than the border is refused too.
    let s = sampler(1, 2.0, 0.1, 6); // border 3 columns
    assert!(s
        .resample(
            &image,
            &[Crop {
                x: -4,
                y: 0,
                size: 6
            }]
        )
        .is_err());
}

#[test]
fn batched_resampling_matches_per_crop_adaptive_pooling() {
    // The reference is pytti's per-crop loop: slice the padded image, then
    // adaptive_avg_pool2d to r × r.
    let mut rng = Rng::new(11).unwrap();
    let image = rng.rand(&[1, 3, 48, 64]).unwrap();
    for (fill, mode) in [
        (BorderFill::Mirror, "reflect"),
        (BorderFill::Smear, "replicate"),
        (BorderFill::Wrap, "circular"),
        (BorderFill::Black, "constant"),
    ] {
        let mut s = sampler(24, 1.0, 0.3, 20);
        s.fill = fill;
        let crops = s.place(64, 48, &mut rng).unwrap();
        let batched = s.resample(&image, &crops).unwrap();
        assert_eq!(batched.size(), vec![24, 3, 20, 20]);
        let (px, py) = s.padding(64, 48);
        let value = if mode == "constant" { Some(0.0) } else { None };
        let padded = image.pad([px, px, py, py], mode, value);
        for (n, c) in crops.iter().enumerate() {
            let reference = padded
                .narrow(2, c.y + py, c.size)
                .narrow(3, c.x + px, c.size)
                .adaptive_avg_pool2d([20, 20]);
            let got = batched.narrow(0, n as i64, 1);
            assert!(
                max_abs_diff(&got, &reference) < 1e-5,
                "{fill:?} crop {n} {c:?}"
            );
        }
    }
}

#[test]
fn gradient_reaches_exactly_the_cropped_pixels() {
    let mut rng = Rng::new(107).unwrap();
    let image = rng.rand(&[1, 3, 20, 30]).unwrap().set_requires_grad(true);
    let s = sampler(1, 2.0, 0.25, 4);
    let out = s
        .resample(
            &image,
            &[Crop {
                x: 5,
                y: 3,
                size: 8,
            }],
        )
        .unwrap();
    out.sum(Kind::Float).backward();
    let grad = image.grad();
    // Each output pixel averages a 2×2 block: every cropped pixel gets 1/4.
    let inside = grad.narrow(2, 3, 8).narrow(3, 5, 8);
    assert!(max_abs_diff(&inside, &inside.full_like(0.25)) < 1e-6);
    assert!((grad.sum(Kind::Float).double_value(&[]) - 3.0 * 16.0).abs() < 1e-4);

    // Through the full random pipeline, the gradient reaches the image too.
    let image = rng.rand(&[1, 3, 40, 40]).unwrap().set_requires_grad(true);
    let s = sampler(6, 2.0, 0.25, 12);
    let out = s.sample(&image, &mut rng).unwrap();
    (out.square().sum(Kind::Float)).backward();
    let g = image.grad();
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(bool::try_from(g.isfinite().all()).unwrap());
}

#[test]
fn mirrored_overhang_sends_gradient_to_the_reflected_pixels() {
    let image = Tensor::zeros([1, 1, 4, 10], opts()).set_requires_grad(true);
    let s = sampler(1, 2.0, 0.5, 4);
    let out = s
        .resample(
            &image,
            &[Crop {
                x: -2,
                y: 0,
                size: 4,
            }],
        )
        .unwrap();
    out.sum(Kind::Float).backward();
    // Columns −2, −1, 0, 1 read image columns 2, 1, 0, 1.
    let row = Vec::<f32>::try_from(&image.grad().get(0).get(0).get(0)).unwrap();
    assert_eq!(row, vec![1.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn same_seed_same_cutouts() {
    let mut rng = Rng::new(109).unwrap();
    let image = rng.rand(&[1, 3, 50, 70]).unwrap();
    let s = sampler(10, 2.0, 0.25, 16);
    rng = Rng::new(1234).unwrap();
    let a = s.sample(&image, &mut rng).unwrap();
    let crops_a = s.place(70, 50, &mut rng).unwrap();
    rng = Rng::new(1234).unwrap();
    let b = s.sample(&image, &mut rng).unwrap();
    let crops_b = s.place(70, 50, &mut rng).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert_eq!(crops_a, crops_b);
    rng = Rng::new(1235).unwrap();
    let c = s.sample(&image, &mut rng).unwrap();
    assert!(max_abs_diff(&a, &c) > 1e-3);
}

#[test]
fn noise_is_a_per_crop_scale_below_the_factor() {
    let mut rng = Rng::new(5).unwrap();
    let grey = Tensor::full([1, 3, 64, 64], 0.5, opts());
    let s = sampler(32, 2.0, 0.0, 32);
    let crops = vec![
        Crop {
            x: 0,
            y: 0,
            size: 64
        };
        32
    ];
    let clean = clip_normalize(&s.resample(&grey, &crops).unwrap()).unwrap();
    let noisy = s.sample_with(&grey, &crops, &mut rng).unwrap();
    // Undo the normalisation of the difference: residual = σ_n · N(0, 1).
    let std = Tensor::from_slice(&CLIP_STD).view([1, 3, 1, 1]);
    let residual = (noisy - clean) * std;
    let per_crop = Vec::<f64>::try_from(
        &residual
            .view([32, -1])
            .std_dim(Some([1i64].as_slice()), true, false)
            .to_kind(Kind::Double),
    )
    .unwrap();
    let max = per_crop.iter().cloned().fold(0.0, f64::max);
    let min = per_crop.iter().cloned().fold(1.0, f64::min);
    assert!(max < 0.1 * 1.05, "max per-crop noise {max}");
    assert!(
        max > 0.06 && min < 0.04,
        "scales {min}..{max} are not U(0, 0.1)"
    );
}

#[test]
fn settings_are_validated_with_their_names() {
    let mut rng = Rng::new(111).unwrap();
    let err = CutoutSampler::new(0, 2.0, 0.25, 224).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("cutouts"), "{err}");
    let err = CutoutSampler::new(40, -1.0, 0.25, 224).unwrap_err();
    assert!(err.message.contains("cut_pow"), "{err}");
    let err = CutoutSampler::new(40, 2.0, f64::NAN, 224).unwrap_err();
    assert!(err.message.contains("cutout_border"), "{err}");
    let err = BorderFill::from_name("reflect", "border_mode").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("border_mode") && err.message.contains("mirror"));
    assert_eq!(
        BorderFill::from_name(" Smear", "border_mode").unwrap(),
        BorderFill::Smear
    );
    // Not a single image.
    let s = sampler(2, 2.0, 0.25, 8);
    let image = rng.rand(&[2, 3, 16, 16]).unwrap();
    assert!(s.sample(&image, &mut rng).is_err());
}

/// With `cutout_augs = "pytti"` the sampler augments each batch after
/// resampling and before the noise, as pytti does: the augmentations drawn
/// from the rng right after the placements (`AugmentParams::draw`, the
/// kornia-checked module) applied to the resampled crops, then the noise.
/// Without augmentations nothing extra is drawn.
#[test]
fn augmented_sampling_is_resample_then_augment_then_noise() {
    use zoetrope::guidance::augment::{self, AugmentConfig, AugmentParams};
    let mut image_rng = Rng::new(5).unwrap();
    let image = image_rng.rand(&[1, 3, 40, 56]).unwrap();
    let mut s = sampler(12, 1.0, 0.25, 16);
    s.augment = Some(AugmentConfig::pytti_classic());

    let mut rng = Rng::new(77).unwrap();
    let got = s.sample(&image, &mut rng).unwrap();

    let mut rng = Rng::new(77).unwrap();
    let crops = s.place(56, 40, &mut rng).unwrap();
    let params = AugmentParams::draw(12, 16, &mut rng).unwrap();
    assert!(!params.is_identity());
    let augmented = augment::apply(&s.resample(&image, &crops).unwrap(), &params).unwrap();
    let noisy = zoetrope::guidance::cutouts::add_noise(&augmented, s.noise, &mut rng).unwrap();
    let want = clip_normalize(&noisy).unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-6);

    // Off: the cutouts are the plain ones, and the rng is where it was.
    s.augment = None;
    let mut rng = Rng::new(77).unwrap();
    let plain = s.sample(&image, &mut rng).unwrap();
    assert!(max_abs_diff(&plain, &got) > 0.1);
    let mut rng = Rng::new(77).unwrap();
    let crops = s.place(56, 40, &mut rng).unwrap();
    let noisy = zoetrope::guidance::cutouts::add_noise(
        &s.resample(&image, &crops).unwrap(),
        s.noise,
        &mut rng,
    )
    .unwrap();
    assert_eq!(max_abs_diff(&plain, &clip_normalize(&noisy).unwrap()), 0.0);

    // A part of a batch is augmented as in the whole batch.
    let part = params.slice(4, 5).unwrap();
    assert_eq!(part.cutouts[..], params.cutouts[4..9]);
    assert_eq!(part.jitter_order, params.jitter_order);
    assert!(params.slice(10, 5).is_err());
}
