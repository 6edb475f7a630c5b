//! One optimisation step (docs/design.md §7) on tiny random models: real optimisation,
//! the straight-through quantiser, the exact clamp rule, scene and prompt
//! weights, the direct and semantic losses, determinism, image prompts and
//! the image state's conversions.

use std::path::Path;

use crate::support::max_abs_diff;
use tch::{nn, Device, Kind, Tensor};
use zoetrope::guidance::adam::Adam;
use zoetrope::guidance::cutouts::CutoutSampler;
use zoetrope::guidance::embed::clip_preprocess;
use zoetrope::guidance::guide::{Guide, Perceptor, StepWeights, Target};
use zoetrope::guidance::image::{ImageModel, ImageState};
use zoetrope::guidance::loss::WeightStop;
use zoetrope::models::clip::{Clip, ClipConfig, VisionConfig};
use zoetrope::models::vqgan::{QuantizerKind, Vqgan, VqganConfig};
use zoetrope::rng::{randomize, Rng};
use zoetrope::scene::prompt::Prompt;
use zoetrope::ErrorKind;

const W: i64 = 64;
const H: i64 = 32;

/// A one-layer ViT CLIP with the real vocabulary (so the real tokenizer
/// works), 32 px input, random weights scaled so that the output depends on
/// the input.
fn tiny_clip(seed: i64) -> Clip {
    tiny_clip_as(seed, Device::Cpu, Kind::Float)
}

/// [`tiny_clip`] on `device` in `kind` (weights drawn on the CPU in fp32 first,
/// so every device and kind gets the same model).
fn tiny_clip_as(seed: i64, device: Device, kind: Kind) -> Clip {
    let mut rng = Rng::new(seed as u64).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = ClipConfig {
        embed_dim: 32,
        image_resolution: 32,
        vision: VisionConfig::ViT {
            layers: 1,
            width: 64,
            patch_size: 8,
            heads: 2,
        },
        context_length: 77,
        vocab_size: 49408,
        transformer_width: 32,
        transformer_heads: 2,
        transformer_layers: 1,
    };
    let clip = Clip::new(&vs.root(), &config).unwrap();
    tch::no_grad(|| {
        // Sorted: `variables()` is a hash map, and the draws must land on the
        // same tensors every time.
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut t) in vars {
            let size = t.size();
            if name == "logit_scale" {
                let _ = t.fill_(4.6);
            } else if name.ends_with(".bias")
                || name == "visual.class_embedding"
                || name == "visual.positional_embedding"
            {
                // A zero class token (and no positions) makes the image
                // embedding a function of the patches alone, so that the
                // tiny random tower is strongly image-dependent.
                let _ = t.zero_();
            } else if name.contains("ln") && name.ends_with(".weight") {
                let _ = t.fill_(1.0);
            } else {
                let fan_in: i64 = if size.len() >= 2 {
                    size[1..].iter().product()
                } else {
                    size.iter().product::<i64>().max(1)
                };
                let r = rng.randn(&size).unwrap() / (fan_in as f64).sqrt();
                t.copy_(&r);
            }
        }
    });
    vs.set_device(device);
    vs.set_kind(kind);
    clip
}

/// A tiny VQGAN: ch 32, ch_mult [1, 2] (factor 2), attention at the lowest
/// resolution, 512 codes of 4 dimensions, random weights, frozen.
fn tiny_vqgan(seed: i64) -> Vqgan {
    tiny_vqgan_as(seed, Device::Cpu, Kind::Float)
}

/// [`tiny_vqgan`] on `device` in `kind`.
fn tiny_vqgan_as(seed: i64, device: Device, kind: Kind) -> Vqgan {
    let mut rng = Rng::new(seed as u64).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = VqganConfig {
        ch: 32,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_levels: vec![1],
        in_channels: 3,
        out_ch: 3,
        z_channels: 32,
        embed_dim: 4,
        n_embed: 512,
        quantizer: QuantizerKind::Nearest,
    };
    let v = Vqgan::new(&vs.root(), &config).unwrap();
    randomize(&vs, &mut rng).unwrap();
    // 512 codes of std 0.5 in 4 dimensions lie well under a unit apart, so
    // Adam steps of ~lr cross between codes within a few steps and the
    // straight-through path can follow the gradient, as it does with a
    // trained, dense codebook (64 coarse codes in 32 dimensions cannot).
    tch::no_grad(|| {
        let mut cb = v.codebook().shallow_clone();
        cb.copy_(&(rng.randn(&cb.size()).unwrap() * 0.5));
    });
    vs.freeze();
    vs.set_device(device);
    vs.set_kind(kind);
    v
}

fn perceptor(seed: i64) -> Perceptor {
    Perceptor {
        name: "tiny-ViT".into(),
        clip: tiny_clip(seed),
        sampler: CutoutSampler::new(8, 1.0, 0.25, 32).unwrap(),
    }
}

fn prompts(scenes: &[&[&str]]) -> Vec<Vec<Prompt>> {
    scenes
        .iter()
        .map(|s| s.iter().map(|p| Prompt::parse(p).unwrap()).collect())
        .collect()
}

fn guide(scenes: &[&[&str]]) -> Guide {
    Guide::new(vec![perceptor(7)], &prompts(scenes), Path::new("."), 0).unwrap()
}

fn vqgan_state(seed: i64) -> ImageState {
    let model = ImageModel::Vqgan(tiny_vqgan(3));
    let mut rng = Rng::new(seed as u64).unwrap();
    ImageState::random(model, W, H, Device::Cpu, &mut rng).unwrap()
}

fn palette_state(seed: i64) -> ImageState {
    let mut rng = Rng::new(seed as u64).unwrap();
    ImageState::random(ImageModel::Palette, W, H, Device::Cpu, &mut rng).unwrap()
}

/// Weight 1 (no stop) for every prompt of every scene, the given scene weights.
fn plain_weights<'a>(guide: &Guide, scene_weights: &[f64]) -> StepWeights<'a> {
    StepWeights {
        scene_weights: scene_weights.to_vec(),
        prompt_weights: guide
            .prompts()
            .iter()
            .map(|s| s.iter().map(|_| WeightStop::weight(1.0)).collect())
            .collect(),
        direct_init: None,
        direct_stabilization: None,
        semantic_init: None,
        semantic_stabilization: None,
        loop_closing: None,
        smoothing: None,
        direct_images: Vec::new(),
    }
}

fn run(
    guide: &Guide,
    state: &mut ImageState,
    lr: f64,
    steps: usize,
    w: &StepWeights,
    rng: &mut Rng,
) -> Vec<f64> {
    let mut adam = Adam::new(state.param(), lr).unwrap();
    (0..steps)
        .map(|_| {
            guide
                .step(state, &mut adam, w, rng)
                .unwrap()
                .double_value(&[])
        })
        .collect()
}

/// Mean prompt distance of scene 0 prompt 0 on a fixed set of cutouts.
fn distance(guide: &Guide, state: &ImageState) -> f64 {
    let mut rng = Rng::new(12345).unwrap();
    guide.prompt_distances(state, &mut rng).unwrap()[0][0]
}

fn mse(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).square().mean(Kind::Float).double_value(&[])
}

#[test]
fn text_prompt_distance_decreases_vqgan() {
    let g = guide(&[&["a red apple"]]);
    for seed in [1, 2] {
        let mut state = vqgan_state(seed);
        let before = distance(&g, &state);
        let lr = state.default_lr();
        assert_eq!(lr, 0.1);
        let w = plain_weights(&g, &[1.0]);
        let mut rng = Rng::new(5).unwrap();
        let losses = run(&g, &mut state, lr, 40, &w, &mut rng);
        let after = distance(&g, &state);
        assert!(losses.iter().all(|l| l.is_finite()));
        // Through a random 512-code quantiser the path is noisy but the
        // distance reliably drops (about 0.1 here; orthogonal is 1.23).
        assert!(
            after < before - 0.03,
            "VQGAN seed {seed}: distance {before} -> {after} (losses {losses:?})"
        );
    }
}

#[test]
fn text_prompt_distance_decreases_palette() {
    let g = guide(&[&["a red apple"]]);
    let mut state = palette_state(1);
    assert_eq!(state.default_lr(), 0.02);
    let before = distance(&g, &state);
    let w = plain_weights(&g, &[1.0]);
    let mut rng = Rng::new(5).unwrap();
    let losses = run(&g, &mut state, 0.02, 30, &w, &mut rng);
    let after = distance(&g, &state);
    assert!(
        after < before - 0.2,
        "Palette: distance {before} -> {after} (losses {losses:?})"
    );
    // The image stays a valid image.
    let img = state.image().unwrap();
    assert_eq!(img.size(), vec![1, 3, H, W]);
    assert!(img.min().double_value(&[]) >= 0.0 && img.max().double_value(&[]) <= 1.0);
}

#[test]
fn gradient_reaches_z_through_the_quantiser() {
    let g = guide(&[&["a red apple"]]);
    let mut state = vqgan_state(2);
    let z0 = state.param().copy();
    let img0 = state.image().unwrap();
    let codes0 = state.z_q().unwrap().unwrap();
    let w = plain_weights(&g, &[1.0]);
    let mut adam = Adam::new(state.param(), 0.1).unwrap();
    let mut rng = Rng::new(9).unwrap();
    let _ = g.step(&mut state, &mut adam, &w, &mut rng).unwrap();
    // z starts exactly on codebook vectors; one step moves it off them.
    assert!(max_abs_diff(&z0, state.param()) > 1e-3);
    for _ in 0..15 {
        let _ = g.step(&mut state, &mut adam, &w, &mut rng).unwrap();
    }
    let codes = state.z_q().unwrap().unwrap();
    let changed = (codes - codes0)
        .abs()
        .sum_dim_intlist(1, false, Kind::Float);
    let n_changed = changed.gt(0.0).sum(Kind::Int64).int64_value(&[]);
    assert!(n_changed > 0, "no latent position changed its code");
    assert!(max_abs_diff(&img0, &state.image().unwrap()) > 1e-3);
    // The parameter stays a float32 leaf that requires grad.
    assert!(state.param().requires_grad());
    assert_eq!(state.param().kind(), Kind::Float);
}

#[test]
fn zero_weight_prompt_contributes_nothing() {
    let g1 = guide(&[&["a red apple"]]);
    let g2 = guide(&[&["a red apple", "a blue banana:0"]]);
    let mut s1 = palette_state(4);
    let mut s2 = palette_state(4);
    let w1 = plain_weights(&g1, &[1.0]);
    let mut w2 = plain_weights(&g2, &[1.0]);
    w2.prompt_weights[0][1] = WeightStop::weight(0.0);
    let mut rng = Rng::new(11).unwrap();
    let l1 = run(&g1, &mut s1, 0.02, 4, &w1, &mut rng);
    let mut rng = Rng::new(11).unwrap();
    let l2 = run(&g2, &mut s2, 0.02, 4, &w2, &mut rng);
    assert_eq!(l1, l2);
    assert_eq!(max_abs_diff(s1.param(), s2.param()), 0.0);
}

#[test]
fn scene_weights_select_the_scene() {
    let both = guide(&[&["a red apple"], &["a blue banana"]]);
    let only_a = guide(&[&["a red apple"]]);
    let only_b = guide(&[&["a blue banana"]]);
    let check = |weights: [f64; 2], single: &Guide| {
        let mut s1 = vqgan_state(6);
        let mut s2 = vqgan_state(6);
        let mut rng = Rng::new(21).unwrap();
        let l1 = run(
            &both,
            &mut s1,
            0.1,
            3,
            &plain_weights(&both, &weights),
            &mut rng,
        );
        let mut rng = Rng::new(21).unwrap();
        let l2 = run(
            single,
            &mut s2,
            0.1,
            3,
            &plain_weights(single, &[1.0]),
            &mut rng,
        );
        assert_eq!(l1, l2, "scene weights {weights:?}");
        assert_eq!(max_abs_diff(s1.param(), s2.param()), 0.0);
        l1
    };
    let la = check([1.0, 0.0], &only_a);
    let lb = check([0.0, 1.0], &only_b);
    assert_ne!(la, lb, "the two scenes' prompts gave the same losses");
    // A half/half mix weighs both: its first loss is the mean of the two.
    let mut s = vqgan_state(6);
    let mut rng = Rng::new(21).unwrap();
    let mix = run(
        &both,
        &mut s,
        0.1,
        1,
        &plain_weights(&both, &[0.5, 0.5]),
        &mut rng,
    );
    assert!((mix[0] - 0.5 * (la[0] + lb[0])).abs() < 1e-5);
}

fn direct_pull(mut state: ImageState, target: &Target, weight: f64, lr: f64) -> f64 {
    let g = guide(&[&["a red apple"]]);
    let mut w = plain_weights(&g, &[1.0]);
    w.direct_stabilization = Some((WeightStop::weight(weight), target));
    let mut rng = Rng::new(31).unwrap();
    run(&g, &mut state, lr, 15, &w, &mut rng);
    mse(&state.image().unwrap(), &target.rgb)
}

#[test]
fn direct_stabilization_pulls_toward_the_target() {
    let g = guide(&[&["a red apple"]]);
    // Palette: the target is another random image.
    let target = g.target(&palette_state(100)).unwrap();
    assert!(target.z_q.is_none());
    let weak = direct_pull(palette_state(8), &target, 0.0, 0.02);
    let strong = direct_pull(palette_state(8), &target, 50.0, 0.02);
    assert!(
        strong < weak * 0.5,
        "palette: mse {weak} (w 0) vs {strong} (w 50)"
    );
    // VQGAN: latent + RGB loss toward another random latent.
    let target = g.target(&vqgan_state(100)).unwrap();
    assert!(target.z_q.is_some());
    let weak = direct_pull(vqgan_state(8), &target, 0.0, 0.1);
    let strong = direct_pull(vqgan_state(8), &target, 50.0, 0.1);
    assert!(
        strong < weak * 0.6,
        "vqgan: mse {weak} (w 0) vs {strong} (w 50)"
    );
}

#[test]
fn semantic_stabilization_pulls_toward_the_target() {
    let g = guide(&[&["a red apple"]]);
    let target = g.target(&palette_state(200)).unwrap();
    assert_eq!(target.embeds.len(), 1);
    assert_eq!(target.embeds[0].size(), vec![1, 32]);
    let mut state = palette_state(9);
    let before = g.semantic_distance(&state, &target).unwrap();
    let mut w = plain_weights(&g, &[0.0]);
    w.semantic_stabilization = Some((WeightStop::weight(1.0), &target));
    let mut rng = Rng::new(41).unwrap();
    let losses = run(&g, &mut state, 0.05, 25, &w, &mut rng);
    let after = g.semantic_distance(&state, &target).unwrap();
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(
        after < before * 0.7,
        "semantic distance {before} -> {after}"
    );
}

#[test]
fn same_seed_same_parameters() {
    let g = guide(&[&["a red apple"]]);
    let go = || {
        let mut s = vqgan_state(12);
        let mut rng = Rng::new(13).unwrap();
        let l = run(&g, &mut s, 0.1, 5, &plain_weights(&g, &[1.0]), &mut rng);
        (l, s.param().copy())
    };
    let (l1, p1) = go();
    let (l2, p2) = go();
    assert_eq!(l1, l2);
    assert_eq!(max_abs_diff(&p1, &p2), 0.0);
    // A different seed for the cutouts gives a different path.
    let mut s = vqgan_state(12);
    let mut rng = Rng::new(14).unwrap();
    run(&g, &mut s, 0.1, 5, &plain_weights(&g, &[1.0]), &mut rng);
    assert!(max_abs_diff(&p1, s.param()) > 0.0);
}

#[test]
fn image_prompts_load_and_guide() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(40, 20, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 12) as u8, if x > 20 { 255 } else { 0 }])
    });
    img.save(dir.path().join("ref.png")).unwrap();
    let scenes = prompts(&[&["[ref.png]"]]);
    let g = Guide::new(vec![perceptor(7)], &scenes, dir.path(), 0).unwrap();
    // The embedding is CLIP's of the preprocessed file.
    let rgb = zoetrope::output::frames::rgb_to_tensor(&img).unwrap();
    let x = clip_preprocess(&rgb, 32).unwrap();
    assert_eq!(x.size(), vec![1, 3, 32, 32]);
    let expected = g.perceptors()[0].clip.encode_image(&x).unwrap();
    assert!(max_abs_diff(&g.prompts()[0][0].embeds[0], &expected) < 1e-5);
    // And it steers the image.
    let mut state = palette_state(15);
    let before = distance(&g, &state);
    let mut rng = Rng::new(16).unwrap();
    run(
        &g,
        &mut state,
        0.02,
        25,
        &plain_weights(&g, &[1.0]),
        &mut rng,
    );
    let after = distance(&g, &state);
    assert!(
        after < before - 0.2,
        "image prompt distance {before} -> {after}"
    );
}

/// A 64×32 picture with a different colour and texture in each quarter,
/// saved as `name` in `dir`; returns it as a tensor.
fn quarters(dir: &Path, name: &str) -> Tensor {
    let img = image::RgbImage::from_fn(W as u32, H as u32, |x, y| {
        let q = (x >= 32) as u8 + 2 * (y >= 16) as u8;
        let base = [[230, 30, 30], [30, 200, 40], [40, 60, 220], [220, 210, 40]][q as usize];
        let stripe = if (x / 4 + y / 4 + q as u32) % 2 == 0 {
            25
        } else {
            0
        };
        image::Rgb(base.map(|c: u8| c.saturating_sub(stripe)))
    });
    img.save(dir.join(name)).unwrap();
    zoetrope::output::frames::rgb_to_tensor(&img).unwrap()
}

/// The step's loss (before its update) with every prompt at weight 1.
fn first_loss(g: &Guide, state: &mut ImageState) -> f64 {
    let mut rng = Rng::new(3).unwrap();
    run(g, state, 1e-9, 1, &plain_weights(g, &[1.0]), &mut rng)[0]
}

#[test]
fn an_image_prompt_compares_each_crop_with_its_cut_nearest_in_place() {
    use zoetrope::guidance::cutouts::Crop;
    let dir = tempfile::tempdir().unwrap();
    let rgb = quarters(dir.path(), "ref.png");
    // The step's crops, and the picture's cuts at the same places listed in
    // another order: matched by place, every crop meets its own cut.
    let crop = |x, y, size| Crop { x, y, size };
    let crops = vec![
        crop(0, 0, 16),
        crop(40, 4, 24),
        crop(8, 16, 16),
        crop(36, 12, 20),
    ];
    let cuts = vec![crops[2], crops[0], crops[3], crops[1]];
    let mut p = perceptor(7);
    p.sampler = CutoutSampler::new(4, 1.0, 0.25, 32)
        .unwrap()
        .with_fixed_placements(crops)
        .unwrap()
        .with_fixed_prompt_placements(cuts)
        .unwrap();
    let g = Guide::new(vec![p], &prompts(&[&["[ref.png]"]]), dir.path(), 0).unwrap();
    // The render is the picture itself: every distance is 0, and the loss is
    // pytti's offset alone.
    let mut same = ImageState::from_image(ImageModel::Palette, &rgb).unwrap();
    let loss = first_loss(&g, &mut same);
    assert!((loss - 0.7).abs() < 1e-5, "loss {loss}");
    // The picture turned upside down has the same whole-image colours, but
    // not at the same places: each crop now differs from its cut.
    let mut flipped = ImageState::from_image(ImageModel::Palette, &rgb.flip([2])).unwrap();
    let loss = first_loss(&g, &mut flipped);
    assert!(loss > 0.7 + 0.05, "loss {loss}");
}

#[test]
fn image_prompt_cuts_follow_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let _ = quarters(dir.path(), "ref.png");
    let scenes = prompts(&[&["a cat", "[ref.png]:2"]]);
    let cuts = |seed| {
        let g = Guide::new(vec![perceptor(7)], &scenes, dir.path(), seed).unwrap();
        let l = g.located().unwrap();
        assert!(l.cuts(0, 0).unwrap().is_none(), "a text prompt has no cuts");
        l.cuts(1, 0).unwrap().unwrap()
    };
    let a = cuts(5);
    assert_eq!(a.size(), vec![8, 32], "one embedding per cutout");
    assert_eq!(
        max_abs_diff(&a, &cuts(5)),
        0.0,
        "the same seed cuts the same"
    );
    assert!(
        max_abs_diff(&a, &cuts(6)) > 1e-3,
        "another seed cuts elsewhere"
    );
    // Without image prompts there is nothing location-aware.
    let g = Guide::new(vec![perceptor(7)], &prompts(&[&["a cat"]]), dir.path(), 5).unwrap();
    assert!(g.located().is_none());
}

#[test]
fn clip_preprocess_resizes_short_side_and_centre_crops() {
    // A 64×32 image whose left and right quarters are red and the middle
    // green: the 32 px centre crop of the 64×32 → 64×32 (no resize) keeps the
    // green middle only.
    let rgb = Tensor::zeros([1, 3, 32, 64], (Kind::Float, Device::Cpu));
    let _ = rgb.narrow(3, 0, 16).narrow(1, 0, 1).fill_(1.0);
    let _ = rgb.narrow(3, 48, 16).narrow(1, 0, 1).fill_(1.0);
    let _ = rgb.narrow(3, 16, 32).narrow(1, 1, 1).fill_(1.0);
    let x = clip_preprocess(&rgb, 32).unwrap();
    let mean = [0.48145466, 0.4578275, 0.40821073];
    let std = [0.26862954, 0.26130258, 0.27577711];
    let g = x.narrow(1, 1, 1).mean(Kind::Float).double_value(&[]);
    let r = x.narrow(1, 0, 1).mean(Kind::Float).double_value(&[]);
    assert!((g - (1.0 - mean[1]) / std[1]).abs() < 1e-4);
    assert!((r - (0.0 - mean[0]) / std[0]).abs() < 1e-4);
    // A downscale keeps the aspect: 128×64 → 64×32 → crop 32.
    let big = Rng::new(901).unwrap().rand(&[1, 3, 64, 128]).unwrap();
    assert_eq!(
        clip_preprocess(&big, 32).unwrap().size(),
        vec![1, 3, 32, 32]
    );
}

#[test]
fn missing_image_prompt_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = prompts(&[&["a cat", "[nowhere/missing_picture.png]:2"]]);
    let err = Guide::new(vec![perceptor(7)], &scenes, dir.path(), 0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(
        err.message.contains("missing_picture.png"),
        "{}",
        err.message
    );
    assert!(err.message.contains("image prompt"), "{}", err.message);
}

#[test]
fn too_long_text_prompt_is_an_input_error_quoting_it() {
    let long = "many words ".repeat(60);
    let scenes = prompts(&[&[long.trim()]]);
    let err = Guide::new(vec![perceptor(7)], &scenes, Path::new("."), 0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(
        err.message.contains("many words many words"),
        "{}",
        err.message
    );
}

#[test]
fn from_image_round_trips() {
    let rgb = Rng::new(902).unwrap().rand(&[1, 3, H, W]).unwrap();
    let pal = ImageState::from_image(ImageModel::Palette, &rgb).unwrap();
    assert_eq!((pal.width(), pal.height()), (W, H));
    assert_eq!(max_abs_diff(&pal.image().unwrap(), &rgb), 0.0);
    // The parameter does not alias the caller's tensor.
    let mut pal = pal;
    let mut adam = Adam::new(pal.param(), 0.02).unwrap();
    let g = guide(&[&["a red apple"]]);
    let mut rng = Rng::new(1).unwrap();
    let _ = g
        .step(&mut pal, &mut adam, &plain_weights(&g, &[1.0]), &mut rng)
        .unwrap();
    assert!(max_abs_diff(pal.param(), &rgb) > 0.0);
    assert_eq!(rgb.size(), vec![1, 3, H, W]);

    let vq = ImageState::from_image(ImageModel::Vqgan(tiny_vqgan(3)), &rgb).unwrap();
    assert_eq!(vq.param().size(), vec![1, 4, H / 2, W / 2]);
    let img = vq.image().unwrap();
    assert_eq!(img.size(), vec![1, 3, H, W]);
    assert!(img.min().double_value(&[]) >= 0.0 && img.max().double_value(&[]) <= 1.0);
    // z starts on codebook vectors (the quantised encoding).
    assert_eq!(max_abs_diff(vq.param(), &vq.z_q().unwrap().unwrap()), 0.0);
    // Sizes that are not multiples of the factor are refused.
    let odd = Rng::new(903).unwrap().rand(&[1, 3, 31, 64]).unwrap();
    let err = ImageState::from_image(ImageModel::Vqgan(tiny_vqgan(3)), &odd).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
}

#[test]
fn set_image_and_param_round_trip() {
    let mut state = vqgan_state(20);
    let before = state.param().shallow_clone();
    let saved = state.param().copy();
    let other = Rng::new(904).unwrap().randn(&[1, 4, H / 2, W / 2]).unwrap();
    state.set_param(&other).unwrap();
    assert_eq!(max_abs_diff(state.param(), &other), 0.0);
    // The same leaf (Adam bound to it stays valid).
    assert_eq!(before.data_ptr(), state.param().data_ptr());
    assert!(state.param().requires_grad());
    state.set_param(&saved).unwrap();
    assert_eq!(max_abs_diff(state.param(), &saved), 0.0);
    let wrong = Tensor::zeros([1, 4, 4, 4], (Kind::Float, Device::Cpu));
    assert_eq!(state.set_param(&wrong).unwrap_err().kind, ErrorKind::Input);

    // set_image re-encodes into the same leaf.
    let rgb = Rng::new(905).unwrap().rand(&[1, 3, H, W]).unwrap();
    state.set_image(&rgb).unwrap();
    assert_eq!(before.data_ptr(), state.param().data_ptr());
    assert_eq!(
        max_abs_diff(state.param(), &state.z_q().unwrap().unwrap()),
        0.0
    );

    let mut pal = palette_state(21);
    pal.set_image(&rgb).unwrap();
    assert_eq!(max_abs_diff(&pal.image().unwrap(), &rgb), 0.0);
}

#[test]
fn warp_latent_moves_the_parameter() {
    use zoetrope::render::warp::{InfillMode, Motion, SamplingMode};
    let motion = Motion {
        translate_x: 2.0,
        ..Motion::default()
    };
    // Palette: pixels move 2 to the right (wrap infill).
    let mut pal = palette_state(22);
    let p0 = pal.param().copy();
    pal.warp_latent(&motion, SamplingMode::Nearest, InfillMode::Wrap)
        .unwrap();
    assert_eq!(max_abs_diff(&p0.roll([2], [3]), pal.param()), 0.0);
    // VQGAN: the latent moves 2 / f = 1 cell.
    let mut vq = vqgan_state(23);
    let z0 = vq.param().copy();
    vq.warp_latent(&motion, SamplingMode::Nearest, InfillMode::Wrap)
        .unwrap();
    assert!(max_abs_diff(&z0.roll([1], [3]), vq.param()) < 1e-6);
}

/// Mixed precision: bf16 models, float32 parameter and Adam, on `device`.
fn mixed_precision_run(device: Device) {
    let p = Perceptor {
        name: "tiny-ViT bf16".into(),
        clip: tiny_clip_as(7, device, Kind::BFloat16),
        sampler: CutoutSampler::new(8, 1.0, 0.25, 32).unwrap(),
    };
    assert_eq!(p.clip.kind(), Kind::BFloat16);
    let g = Guide::new(vec![p], &prompts(&[&["a red apple"]]), Path::new("."), 0).unwrap();
    assert_eq!(g.prompts()[0][0].embeds[0].kind(), Kind::Float);
    let vqgan = tiny_vqgan_as(3, device, Kind::BFloat16);
    assert_eq!(vqgan.kind(), Kind::BFloat16);
    let mut rng = Rng::new(1).unwrap();
    let mut state = ImageState::random(ImageModel::Vqgan(vqgan), W, H, device, &mut rng).unwrap();
    assert_eq!(state.param().kind(), Kind::Float);
    assert_eq!(state.param().device(), device);
    let z0 = state.param().copy();
    let target = g.target(&state).unwrap();
    let mut w = plain_weights(&g, &[1.0]);
    w.direct_init = Some((WeightStop::weight(0.5), &target));
    w.semantic_init = Some((WeightStop::weight(0.5), &target));
    let mut rng = Rng::new(2).unwrap();
    let losses = run(&g, &mut state, 0.1, 4, &w, &mut rng);
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    assert_eq!(state.param().kind(), Kind::Float);
    assert!(max_abs_diff(&z0, state.param()) > 1e-3);
    let img = state.image().unwrap();
    assert_eq!((img.kind(), img.device()), (Kind::Float, device));
    assert_eq!(img.size(), vec![1, 3, H, W]);
}

#[test]
fn bf16_models_with_float32_parameter() {
    mixed_precision_run(Device::Cpu);
}

/// The same on the first GPU, when there is one (skipped otherwise).
#[test]
fn cuda_step_when_available() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: skipped");
        return;
    }
    mixed_precision_run(Device::Cuda(0));
    // And fp32 on the GPU: a palette run decreases the distance.
    let p = Perceptor {
        name: "tiny-ViT".into(),
        clip: tiny_clip_as(7, Device::Cuda(0), Kind::Float),
        sampler: CutoutSampler::new(8, 1.0, 0.25, 32).unwrap(),
    };
    let g = Guide::new(vec![p], &prompts(&[&["a red apple"]]), Path::new("."), 0).unwrap();
    let mut rng = Rng::new(1).unwrap();
    let mut state =
        ImageState::random(ImageModel::Palette, W, H, Device::Cuda(0), &mut rng).unwrap();
    let before = distance(&g, &state);
    let mut rng = Rng::new(5).unwrap();
    run(
        &g,
        &mut state,
        0.02,
        30,
        &plain_weights(&g, &[1.0]),
        &mut rng,
    );
    assert!(distance(&g, &state) < before - 0.2);
}

/// pytti's clamp_with_grad, exactly: an out-of-range pixel whose gradient
/// would push it further out does not move; one pulled back into range does.
#[test]
fn clamp_rule_blocks_only_outward_gradients() {
    let g = guide(&[&["a red apple"]]);
    let mut state = palette_state(30);
    // Column 0 at 1.5 (out of range), the rest at 0.5.
    let values = Tensor::full([1, 3, H, W], 0.5, (Kind::Float, Device::Cpu));
    let _ = values.narrow(3, 0, 1).fill_(1.5);
    state.set_param(&values).unwrap();
    // Target 2.0 in column 0 pushes outward (blocked); 0.25 elsewhere pulls
    // the in-range pixels down (passes).
    let rgb = Tensor::full([1, 3, H, W], 0.25, (Kind::Float, Device::Cpu));
    let _ = rgb.narrow(3, 0, 1).fill_(2.0);
    let outward = Target {
        rgb,
        z_q: None,
        embeds: Vec::new(),
    };
    let mut w = plain_weights(&g, &[0.0]);
    w.direct_stabilization = Some((WeightStop::weight(1.0), &outward));
    let mut adam = Adam::new(state.param(), 0.02).unwrap();
    let mut rng = Rng::new(30).unwrap();
    let _ = g.step(&mut state, &mut adam, &w, &mut rng).unwrap();
    let p = state.param();
    assert_eq!(
        max_abs_diff(&p.narrow(3, 0, 1), &values.narrow(3, 0, 1)),
        0.0
    );
    let moved = values.narrow(3, 1, W - 1) - p.narrow(3, 1, W - 1);
    assert!(
        (moved.min().double_value(&[]) - 0.02).abs() < 1e-4,
        "{moved}"
    );

    // Target 0.25 everywhere: column 0 is pulled back into range and moves.
    let inward = Target {
        rgb: Tensor::full([1, 3, H, W], 0.25, (Kind::Float, Device::Cpu)),
        z_q: None,
        embeds: Vec::new(),
    };
    state.set_param(&values).unwrap();
    let mut w = plain_weights(&g, &[0.0]);
    w.direct_stabilization = Some((WeightStop::weight(1.0), &inward));
    let mut adam = Adam::new(state.param(), 0.02).unwrap();
    let _ = g.step(&mut state, &mut adam, &w, &mut rng).unwrap();
    let col = values.narrow(3, 0, 1) - state.param().narrow(3, 0, 1);
    assert!((col.min().double_value(&[]) - 0.02).abs() < 1e-4, "{col}");
}

/// `clip_preprocess` against OpenAI's `_transform` (PIL bicubic resize of the
/// short side, centre crop, normalisation), fixtures from
/// `scripts/reference/gen_step_fixtures.py`. PIL rounds the resized image to
/// 8 bits and torch's antialiased bicubic differs from PIL's by float
/// rounding, so the tolerance is a few 8-bit levels (1/255 ≈ 0.015 after
/// normalisation).
#[test]
fn clip_preprocess_matches_openai_transform() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/step");
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("preprocess.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for name in ["down", "up"] {
        let img = zoetrope::output::frames::read_rgb(&dir.join(format!("{name}.png"))).unwrap();
        let rgb = zoetrope::output::frames::rgb_to_tensor(&img).unwrap();
        let ours = clip_preprocess(&rgb, 32).unwrap();
        let theirs = &expected[name];
        let diff = (&ours - theirs).abs();
        let max = diff.max().double_value(&[]);
        let mean = diff.mean(Kind::Float).double_value(&[]);
        eprintln!("{name}: max {max} mean {mean}");
        assert!(max < 0.08 && mean < 0.01, "{name}: max {max}, mean {mean}");
    }
}

#[test]
fn prompt_stop_and_negative_weight() {
    let g = guide(&[&["a red apple"]]);
    // A stop above every possible distance (π²/2 ≈ 4.93): the prompt still
    // reports its loss but no longer pulls, so nothing moves.
    let mut state = palette_state(40);
    let p0 = state.param().copy();
    let mut w = plain_weights(&g, &[1.0]);
    w.prompt_weights[0][0] = WeightStop::new(1.0, Some(10.0));
    let mut rng = Rng::new(1).unwrap();
    let losses = run(&g, &mut state, 0.02, 3, &w, &mut rng);
    assert!(losses.iter().all(|l| *l > 0.5), "{losses:?}");
    assert_eq!(max_abs_diff(&p0, state.param()), 0.0);
    // A negative weight pushes the image away from the prompt.
    let before = distance(&g, &state);
    w.prompt_weights[0][0] = WeightStop::weight(-1.0);
    let mut rng = Rng::new(2).unwrap();
    let losses = run(&g, &mut state, 0.02, 20, &w, &mut rng);
    assert!(losses.iter().all(|l| *l < 0.0), "{losses:?}");
    let after = distance(&g, &state);
    assert!(after > before + 0.1, "negative prompt: {before} -> {after}");
}

#[test]
fn gumbel_vqgan_state() {
    let mut rng = Rng::new(3).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = VqganConfig {
        ch: 32,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_levels: vec![],
        in_channels: 3,
        out_ch: 3,
        z_channels: 32,
        embed_dim: 32, // GumbelVQ's proj reads quant_conv's output: embed_dim = z_channels
        n_embed: 128,
        quantizer: QuantizerKind::Gumbel,
    };
    let v = Vqgan::new(&vs.root(), &config).unwrap();
    randomize(&vs, &mut rng).unwrap();
    vs.freeze();
    let mut rng = Rng::new(4).unwrap();
    let mut state = ImageState::random(ImageModel::Vqgan(v), W, H, Device::Cpu, &mut rng).unwrap();
    assert_eq!(state.default_lr(), 0.15);
    assert_eq!(state.param().size(), vec![1, 32, H / 2, W / 2]);
    let rgb = Rng::new(906).unwrap().rand(&[1, 3, H, W]).unwrap();
    state.set_image(&rgb).unwrap();
    assert_eq!(
        max_abs_diff(state.param(), &state.z_q().unwrap().unwrap()),
        0.0
    );
    let z0 = state.param().copy();
    let g = guide(&[&["a red apple"]]);
    let mut rng = Rng::new(5).unwrap();
    run(
        &g,
        &mut state,
        0.15,
        2,
        &plain_weights(&g, &[1.0]),
        &mut rng,
    );
    assert!(max_abs_diff(&z0, state.param()) > 1e-3);
}

#[test]
fn mismatched_step_weights_are_refused() {
    let g = guide(&[&["a red apple", "a pear"]]);
    let mut state = palette_state(41);
    let mut adam = Adam::new(state.param(), 0.02).unwrap();
    let mut rng = Rng::new(41).unwrap();
    let w = plain_weights(&g, &[1.0, 1.0]);
    let err = g.step(&mut state, &mut adam, &w, &mut rng).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    let mut w = plain_weights(&g, &[1.0]);
    w.prompt_weights[0].pop();
    assert!(g.step(&mut state, &mut adam, &w, &mut rng).is_err());
    // A weight that evaluated to NaN is the user's expression: an input error.
    let mut w = plain_weights(&g, &[1.0]);
    w.prompt_weights[0][1] = WeightStop::weight(f64::NAN);
    let err = g.step(&mut state, &mut adam, &w, &mut rng).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("a pear"), "{}", err.message);
}

#[test]
fn target_of_an_outside_image() {
    let g = guide(&[&["a red apple"]]);
    let rgb = Rng::new(907).unwrap().rand(&[1, 3, H, W]).unwrap();
    let pal = palette_state(50);
    let t = g.target_of_image(&pal, &rgb).unwrap();
    assert_eq!(max_abs_diff(&t.rgb, &rgb), 0.0);
    assert!(t.z_q.is_none());
    let vq = vqgan_state(50);
    let t = g.target_of_image(&vq, &rgb).unwrap();
    // The RGB term compares with the image itself, the latent term with its encoding.
    assert_eq!(max_abs_diff(&t.rgb, &rgb), 0.0);
    let encoded = ImageState::from_image(ImageModel::Vqgan(tiny_vqgan(3)), &rgb).unwrap();
    assert_eq!(max_abs_diff(t.z_q.as_ref().unwrap(), encoded.param()), 0.0);
    assert!(!t.z_q.as_ref().unwrap().requires_grad());
    let small = Rng::new(908).unwrap().rand(&[1, 3, H / 2, W]).unwrap();
    assert!(g.target_of_image(&vq, &small).is_err());
}

/// pytti's smoothing loss alone (scene weight 0) flattens the image: its
/// total variation falls, and the step's loss is `smoothing_weight · tv`.
#[test]
fn smoothing_weight_lowers_total_variation() {
    let g = guide(&[&["a red apple"]]);
    let mut state = palette_state(5);
    let tv = |s: &ImageState| {
        zoetrope::guidance::loss::tv_loss(&s.image().unwrap())
            .unwrap()
            .double_value(&[0])
    };
    let before = tv(&state);
    let mut w = plain_weights(&g, &[0.0]);
    w.smoothing = Some(WeightStop::weight(2.0));
    let mut rng = Rng::new(3).unwrap();
    let losses = run(&g, &mut state, 0.05, 20, &w, &mut rng);
    assert!(
        (losses[0] - 2.0 * before).abs() < 1e-4 * before.max(1.0),
        "{losses:?} vs tv {before}"
    );
    let after = tv(&state);
    assert!(after < before * 0.5, "tv {before} -> {after}");

    // Weight 0 changes nothing against no smoothing at all.
    let go = |smoothing| {
        let mut s = palette_state(6);
        let mut w = plain_weights(&g, &[1.0]);
        w.smoothing = smoothing;
        let mut rng = Rng::new(8).unwrap();
        run(&g, &mut s, 0.05, 3, &w, &mut rng);
        s.param().copy()
    };
    assert_eq!(
        max_abs_diff(&go(None), &go(Some(WeightStop::weight(0.0)))),
        0.0
    );
}

/// `gradient_accumulation_steps`: the cutouts in several passes give the
/// one-pass step up to float rounding (losses, and the parameter after
/// Adam), with pytti's augmentations and the noise on, prompts with negative
/// weights and stops and a semantic loss; the passes draw the same random
/// numbers, so the next steps agree too.
#[test]
fn gradient_accumulation_matches_one_pass() {
    use zoetrope::guidance::augment::AugmentConfig;
    let mut p = perceptor(7);
    p.sampler.augment = Some(AugmentConfig::pytti_classic());
    let mut g = Guide::new(
        vec![p],
        &prompts(&[&["a red apple", "blurry:-0.5:-0.9", "a cat:2:0.1"]]),
        Path::new("."),
        0,
    )
    .unwrap();
    for (state_of, steps) in [
        (vqgan_state as fn(i64) -> ImageState, 1),
        (palette_state, 3),
    ] {
        let target = {
            let s = state_of(40);
            g.target(&s).unwrap()
        };
        let mut go = |passes: usize| {
            g.set_gradient_accumulation_steps(passes).unwrap();
            let mut s = state_of(41);
            let mut rng = Rng::new(42).unwrap();
            let mut w = plain_weights(&g, &[1.0]);
            w.prompt_weights[0][1] = WeightStop::new(-0.5, Some(-0.9));
            w.prompt_weights[0][2] = WeightStop::new(2.0, Some(0.1));
            w.semantic_stabilization = Some((WeightStop::weight(0.7), &target));
            let losses = run(&g, &mut s, 0.05, steps, &w, &mut rng);
            (losses, s.param().copy())
        };
        let (l1, p1) = go(1);
        for passes in [3, 8] {
            let (lk, pk) = go(passes);
            for (a, b) in l1.iter().zip(&lk) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "{passes}: {a} vs {b}"
                );
            }
            let diff = max_abs_diff(&p1, &pk);
            assert!(diff < 1e-5, "{passes} passes: parameters differ by {diff}");
        }
        // And the step moved the parameter at all.
        assert!(max_abs_diff(&p1, state_of(41).param()) > 1e-3);
    }
    assert!(g.set_gradient_accumulation_steps(0).is_err());
}

/// pytti's augmentations in the step: seeded (the same seed gives the same
/// parameters), and they change what the perceptors see (another path than
/// without them from the same seed).
#[test]
fn augmented_steps_repeat_with_the_seed() {
    use zoetrope::guidance::augment::AugmentConfig;
    let mut p = perceptor(7);
    p.sampler.augment = Some(AugmentConfig::pytti_classic());
    let g = Guide::new(vec![p], &prompts(&[&["a red apple"]]), Path::new("."), 0).unwrap();
    let go = |g: &Guide| {
        let mut s = vqgan_state(12);
        let mut rng = Rng::new(13).unwrap();
        let l = run(g, &mut s, 0.1, 4, &plain_weights(g, &[1.0]), &mut rng);
        (l, s.param().copy())
    };
    let (l1, p1) = go(&g);
    let (l2, p2) = go(&g);
    assert_eq!(l1, l2);
    assert_eq!(max_abs_diff(&p1, &p2), 0.0);
    let plain = guide(&[&["a red apple"]]);
    let (l3, p3) = go(&plain);
    assert_ne!(l1, l3);
    assert!(max_abs_diff(&p1, &p3) > 0.0);
}
