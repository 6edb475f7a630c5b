//! pytti's cutout augmentations against kornia 0.6.2 (fixtures from
//! scripts/reference/gen_augment_fixtures.py): each operation on fixed
//! parameters, the one-resample composite against kornia's sequence,
//! gradients, and the distributions of the drawn parameters (seeded).

use std::collections::HashMap;

use tch::{Kind, Tensor};
use zoetrope::guidance::augment::{
    self, Affine, AugmentConfig, AugmentParams, ColorOp, CutoutAugment, EraseBox, Jitter,
    Perspective,
};
use zoetrope::rng::Rng;

type Fixture = HashMap<String, Tensor>;

fn fixture(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/augment/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_iter()
        .collect()
}

fn get<'a>(fx: &'a Fixture, key: &str) -> &'a Tensor {
    fx.get(key)
        .unwrap_or_else(|| panic!("fixture has no {key}"))
}

fn floats(fx: &Fixture, key: &str) -> Vec<f64> {
    let t = get(fx, key).to_kind(Kind::Double).flatten(0, -1);
    Vec::<f64>::try_from(&t).unwrap()
}

fn applied(fx: &Fixture, op: &str) -> Vec<bool> {
    floats(fx, &format!("{op}_prob"))
        .iter()
        .map(|&p| p == 1.0)
        .collect()
}

/// The parameters of the operations in `ops` (fixture prefixes: flip,
/// affine, persp, jitter, jitter_strong, erase) for `fx`'s cutouts.
fn params(fx: &Fixture, input: &str, ops: &[&str]) -> AugmentParams {
    let size = get(fx, input).size();
    let mut p = AugmentParams::none(size[0] as usize, size[3]).unwrap();
    for &op in ops {
        let on = applied(fx, op);
        let f = |name: &str| floats(fx, &format!("{op}_{name}"));
        match op {
            "flip" => {
                for (c, on) in p.cutouts.iter_mut().zip(on) {
                    c.flip = on;
                }
            }
            "affine" => {
                let (angle, tx, ty) = (f("angle"), f("tx"), f("ty"));
                for (i, c) in p.cutouts.iter_mut().enumerate() {
                    c.affine = on[i].then_some(Affine {
                        angle: angle[i],
                        tx: tx[i],
                        ty: ty[i],
                    });
                }
            }
            "persp" => {
                let o = f("offsets");
                for (i, c) in p.cutouts.iter_mut().enumerate() {
                    let corner = |k: usize| [o[8 * i + 2 * k], o[8 * i + 2 * k + 1]];
                    c.perspective = on[i].then_some(Perspective {
                        offsets: [corner(0), corner(1), corner(2), corner(3)],
                        distortion: 0.2,
                    });
                }
            }
            "jitter" | "jitter_strong" => {
                let (b, k, s, h) = (f("brightness"), f("contrast"), f("saturation"), f("hue"));
                for (i, c) in p.cutouts.iter_mut().enumerate() {
                    c.jitter = on[i].then_some(Jitter {
                        brightness: b[i],
                        contrast: k[i],
                        saturation: s[i],
                        hue: h[i],
                    });
                }
                let order = Vec::<i64>::try_from(get(fx, &format!("{op}_order"))).unwrap();
                for (slot, i) in p.jitter_order.iter_mut().zip(order) {
                    *slot = ColorOp::from_index(i as usize).unwrap();
                }
            }
            "erase" => {
                let b = f("box");
                for (i, c) in p.cutouts.iter_mut().enumerate() {
                    c.erase = on[i].then_some(EraseBox {
                        x: b[4 * i] as i64,
                        y: b[4 * i + 1] as i64,
                        w: b[4 * i + 2] as i64,
                        h: b[4 * i + 3] as i64,
                    });
                }
            }
            other => panic!("unknown operation {other}"),
        }
    }
    p
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn mean_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().mean(Kind::Double).double_value(&[])
}

type Op = fn(&Tensor, &AugmentParams) -> zoetrope::Result<Tensor>;

/// `op` on the single-operation fixture's input, against kornia's output.
fn single_op_error(op: Op, prefix: &str) -> f64 {
    let fx = fixture("single_ops");
    let p = params(&fx, "input", &[prefix]);
    let out = op(get(&fx, "input"), &p).unwrap();
    let expected = get(&fx, &format!("{prefix}_out"));
    assert_eq!(out.size(), expected.size());
    let err = max_abs(&out, expected);
    eprintln!("{prefix}: max abs error vs kornia 0.6.2 = {err:.3e}");
    err
}

#[test]
fn flip_matches_kornia() {
    assert!(single_op_error(augment::flip, "flip") < 1e-4);
}

#[test]
fn affine_matches_kornia() {
    // Also a horizontal translation, which pytti's settings never draw, to
    // pin the axis convention.
    assert!(single_op_error(augment::affine, "affine") < 1e-4);
}

#[test]
fn perspective_matches_kornia() {
    // Includes kornia's stretch with zero corner offsets and the half-dark
    // zero-padded border.
    assert!(single_op_error(augment::perspective, "persp") < 1e-4);
}

#[test]
fn jitter_matches_kornia() {
    assert!(single_op_error(augment::jitter, "jitter") < 1e-4);
}

#[test]
fn strong_jitter_matches_kornia() {
    // All four colour operations far from neutral, on greys, channel ties,
    // black and white.
    assert!(single_op_error(augment::jitter, "jitter_strong") < 1e-4);
}

#[test]
fn erasing_matches_kornia() {
    assert!(single_op_error(augment::erase, "erase") < 1e-4);
}

#[test]
fn no_augmentation_reproduces_the_cutouts() {
    let fx = fixture("single_ops");
    let x = get(&fx, "input");
    let p = AugmentParams::none(4, 16).unwrap();
    let err = max_abs(&augment::apply(x, &p).unwrap(), x);
    eprintln!("identity resample: max abs error {err:.3e}");
    assert!(err < 1e-5);
}

/// The composite's bound on smooth cutouts (values 0.1–0.9, sinusoids of at
/// most 1.5 periods per side: on the 32-px fixture `|f'| ≤ 0.4·k ≈ 0.12`
/// and `|f''| ≤ 0.4·k² ≈ 0.035` per pixel, `k = 2π·1.5/32`; on the
/// 24-px Sequential fixture `k` is 4/3 of that).
///
/// - Where the intermediate position and its source lie inside the cutout,
///   both results are bilinear interpolations of the same map: a bilinear
///   resample errs by at most `⅛·(|f_xx| + |f_yy|) ≈ 0.009`, kornia
///   resamples twice and the composite once, so they differ by at most
///   ≈ 0.03 (more where the perspective magnifies). Measured there: at most
///   0.005, 0.001 on average.
/// - Where the source position crosses the cutout's edge, kornia
///   interpolates the border clamp's kink between intermediate pixels while
///   the composite clamps the exact position: a first-order difference, at
///   most about `¼·|f'| ≈ 0.03`. Measured: at most 0.011 (composite
///   fixture), 0.012 (the drawn Sequential run).
///
/// Mean absolute differences measured: 4.9e-4 (composite), 4.3e-4 (the
/// Sequential's geometric stages), 3.2e-4 (its whole output). The limits are
/// about twice the measured values and under the analytic worst cases.
const COMPOSITE_MAX: f64 = 0.025;
const COMPOSITE_MEAN: f64 = 1e-3;

#[test]
fn composite_differs_from_kornias_sequence_by_interpolation_only() {
    let fx = fixture("composite");
    let x = get(&fx, "smooth");
    let p = params(&fx, "smooth", &["flip", "affine", "persp"]);
    let out = augment::geometric(x, &p).unwrap();
    let seq = get(&fx, "seq_out");
    let (max, mean) = (max_abs(&out, seq), mean_abs(&out, seq));
    eprintln!(
        "composite vs flip→affine→perspective (6×32², smooth): max {max:.3e}, mean {mean:.3e}"
    );
    assert!(max < COMPOSITE_MAX && mean < COMPOSITE_MEAN);

    // Each stage alone through the composite is kornia's (above); so is the
    // composite where only one resampling stage is present.
    let mut flip_affine = p.clone();
    for c in &mut flip_affine.cutouts {
        c.perspective = None;
    }
    let out = augment::geometric(x, &flip_affine).unwrap();
    let flipped = augment::flip(x, &flip_affine).unwrap();
    let expected = augment::affine(&flipped, &flip_affine).unwrap();
    assert!(max_abs(&out, &expected) < 1e-5);
}

#[test]
fn drawn_sequential_run_matches_the_composite() {
    // One run of pytti's whole Sequential (seeded torch), with the
    // parameters it drew: geometric stages, then jitter and erasing.
    let fx = fixture("sequential");
    let x = get(&fx, "input");
    let all = ["flip", "affine", "persp", "jitter", "erase"];
    let p = params(&fx, "input", &all);
    let geo = augment::geometric(x, &p).unwrap();
    let expected = get(&fx, "geometric_out");
    let (max, mean) = (max_abs(&geo, expected), mean_abs(&geo, expected));
    eprintln!("composite vs kornia's Sequential, geometric stages (8×24²): max {max:.3e}, mean {mean:.3e}");
    assert!(max < COMPOSITE_MAX && mean < COMPOSITE_MEAN);

    // Colour jitter and erasing on kornia's own geometric output are exact.
    let rest = augment::erase(&augment::jitter(expected, &p).unwrap(), &p).unwrap();
    let err = max_abs(&rest, get(&fx, "out"));
    eprintln!("jitter + erasing after kornia's geometry: max abs error {err:.3e}");
    assert!(err < 1e-4);

    let out = augment::apply(x, &p).unwrap();
    let full = get(&fx, "out");
    let (max, mean) = (max_abs(&out, full), mean_abs(&out, full));
    eprintln!("apply vs kornia's Sequential (8×24²): max {max:.3e}, mean {mean:.3e}");
    assert!(max < COMPOSITE_MAX && mean < COMPOSITE_MEAN);
}

/// Every operation on, on several cutouts; one cutout with only erasing.
fn everything(n: usize, r: i64) -> AugmentParams {
    let mut p = AugmentParams::none(n, r).unwrap();
    p.jitter_order = [
        ColorOp::Hue,
        ColorOp::Brightness,
        ColorOp::Saturation,
        ColorOp::Contrast,
    ];
    for (i, c) in p.cutouts.iter_mut().enumerate() {
        let f = i as f64;
        *c = CutoutAugment {
            flip: i % 2 == 0,
            affine: Some(Affine {
                angle: 20.0 - 9.0 * f,
                tx: 0.0,
                ty: 1.5 - f,
            }),
            perspective: Some(Perspective {
                offsets: [[0.3, 0.9], [0.7, 0.1], [0.5, 0.5], [0.2, 0.8]],
                distortion: 0.2,
            }),
            jitter: Some(Jitter {
                brightness: 1.0,
                contrast: 1.0,
                saturation: 1.01 - 0.005 * f,
                hue: 0.01 - 0.004 * f,
            }),
            erase: Some(EraseBox {
                x: 2 + i as i64,
                y: 3,
                w: 5,
                h: 6,
            }),
        };
    }
    p.cutouts[n - 1] = CutoutAugment {
        erase: Some(EraseBox {
            x: 4,
            y: 1,
            w: 7,
            h: 9,
        }),
        ..CutoutAugment::NONE
    };
    p
}

#[test]
fn gradients_flow_to_the_cutouts_and_not_from_erased_boxes() {
    let fx = fixture("single_ops");
    // Greys, ties, black and white (cutout 2) must give finite gradients too.
    let x = get(&fx, "input").copy().set_requires_grad(true);
    let p = everything(4, 16);
    let mut rng = Rng::new(5).unwrap();
    let weights = rng.rand(&[4, 3, 16, 16]).unwrap();
    let out = augment::apply(&x, &p).unwrap();
    assert_eq!(out.size(), vec![4, 3, 16, 16]);
    (out * &weights).sum(Kind::Float).backward();
    let g = x.grad();
    assert_eq!(
        g.isfinite().all().int64_value(&[]),
        1,
        "non-finite gradient"
    );
    for i in 0..4 {
        let gi = g.get(i).abs().sum(Kind::Double).double_value(&[]);
        assert!(gi > 1e-3, "cutout {i} gets no gradient");
    }
    // The cutout with only erasing: its box gets exactly zero, the rest the weights.
    let b = p.cutouts[3].erase.unwrap();
    let g3 = g.get(3);
    let inside = g3.narrow(1, b.y, b.h).narrow(2, b.x, b.w);
    assert_eq!(inside.abs().max().double_value(&[]), 0.0);
    let outside = g3.narrow(1, b.y + b.h, 16 - b.y - b.h);
    let w3 = weights.get(3).narrow(1, b.y + b.h, 16 - b.y - b.h);
    assert!(max_abs(&outside, &w3) < 1e-6);

    // Every single operation keeps the graph.
    for op in [
        augment::flip,
        augment::affine,
        augment::perspective,
        augment::jitter,
        augment::erase,
    ] {
        let x = get(&fx, "input").copy().set_requires_grad(true);
        let out: Tensor = op(&x, &p).unwrap();
        (out * &weights).sum(Kind::Float).backward();
        let g = x.grad();
        assert_eq!(g.isfinite().all().int64_value(&[]), 1);
        assert!(g.abs().sum(Kind::Double).double_value(&[]) > 1.0);
    }
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let p = AugmentParams::none(2, 8).unwrap();
    let x = Tensor::zeros([3, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
    assert!(augment::apply(&x, &p).is_err());
    let x = Tensor::zeros([2, 3, 8, 9], (Kind::Float, tch::Device::Cpu));
    assert!(augment::geometric(&x, &p).is_err());
    assert!(augment::jitter(&x, &p).is_err());
    assert!(augment::erase(&x, &p).is_err());
    assert!(AugmentParams::none(2, 1).is_err());
    let mut bad = AugmentConfig::pytti_classic();
    bad.flip_p = 1.5;
    assert!(AugmentParams::draw_with(&bad, 2, 8, &mut Rng::new(1).unwrap()).is_err());
}

// ---------------------------------------------------------------------------
// The drawn parameters' distributions. Seeded, so deterministic; the limits
// are ~4 standard errors (or the KS statistic's 0.1 % quantile), so another
// seed passes too with overwhelming probability.

const N: usize = 20_000;
const R: i64 = 224;

/// The Kolmogorov–Smirnov statistic of `v` against U(lo, hi).
fn ks_uniform(v: &[f64], lo: f64, hi: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|x| (x - lo) / (hi - lo)).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &x)| (x - i as f64 / n).abs().max(((i + 1) as f64 / n - x).abs()))
        .fold(0.0, f64::max)
}

/// KS limit at the 0.1 % level.
fn ks_limit(n: usize) -> f64 {
    1.95 / (n as f64).sqrt()
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0),
    )
}

/// `v` lies in `[lo, hi]` and looks U(lo, hi): range, mean, variance, KS.
fn assert_uniform(name: &str, v: &[f64], lo: f64, hi: f64) {
    let n = v.len();
    assert!(n > 1000, "{name}: only {n} values");
    assert!(
        v.iter().all(|x| (lo..=hi).contains(x)),
        "{name}: a value outside [{lo}, {hi}]"
    );
    let width = hi - lo;
    let (m, var) = mean_var(v);
    let se_mean = width / (12.0 * n as f64).sqrt();
    // Var of (X − μ)² for a uniform: w⁴/80 − (w²/12)² = w⁴/180.
    let se_var = (width.powi(4) / 180.0 / n as f64).sqrt();
    let ks = ks_uniform(v, lo, hi);
    eprintln!(
        "{name}: n {n}, mean {m:.5} (expect {:.5}), var {var:.3e} (expect {:.3e}), KS {ks:.4}",
        (lo + hi) / 2.0,
        width * width / 12.0
    );
    assert!(
        (m - (lo + hi) / 2.0).abs() < 4.0 * se_mean,
        "{name}: mean {m}"
    );
    assert!(
        (var - width * width / 12.0).abs() < 4.0 * se_var,
        "{name}: variance {var}"
    );
    assert!(ks < ks_limit(n), "{name}: KS {ks}");
}

fn assert_frequency(name: &str, hits: usize, n: usize, p: f64) {
    let f = hits as f64 / n as f64;
    let se = (p * (1.0 - p) / n as f64).sqrt();
    eprintln!("{name}: frequency {f:.4} (p {p}, se {se:.4})");
    assert!(
        (f - p).abs() < 4.0 * se,
        "{name}: frequency {f}, expected {p}"
    );
}

#[test]
fn drawn_parameters_follow_pytti_classic_distributions() {
    let mut rng = Rng::new(2024).unwrap();
    let p = AugmentParams::draw(N, R, &mut rng).unwrap();
    assert_eq!((p.size, p.cutouts.len()), (R, N));
    let c = &p.cutouts;
    let count = |f: &dyn Fn(&CutoutAugment) -> bool| c.iter().filter(|c| f(c)).count();
    assert_frequency("flip", count(&|c| c.flip), N, 0.3);
    assert_frequency("affine", count(&|c| c.affine.is_some()), N, 0.8);
    assert_frequency("perspective", count(&|c| c.perspective.is_some()), N, 0.4);
    assert_frequency("jitter", count(&|c| c.jitter.is_some()), N, 0.7);
    assert_frequency("erasing", count(&|c| c.erase.is_some()), N, 0.7);
    // The coins are independent: flip and perspective together 0.3 · 0.4.
    assert_frequency(
        "flip ∧ perspective",
        count(&|c| c.flip && c.perspective.is_some()),
        N,
        0.12,
    );

    let affine: Vec<Affine> = c.iter().filter_map(|c| c.affine).collect();
    let angles: Vec<f64> = affine.iter().map(|a| a.angle).collect();
    assert_uniform("angle", &angles, -30.0, 30.0);
    assert!(
        affine.iter().all(|a| a.tx == 0.0),
        "pytti never translates sideways"
    );
    let ty: Vec<f64> = affine.iter().map(|a| a.ty).collect();
    assert_uniform("ty", &ty, -0.1 * R as f64, 0.1 * R as f64);

    let offsets: Vec<f64> = c
        .iter()
        .filter_map(|c| c.perspective)
        .flat_map(|p| {
            assert_eq!(p.distortion, 0.2);
            p.offsets.into_iter().flatten()
        })
        .collect();
    assert_uniform("perspective offsets", &offsets, 0.0, 1.0);

    let jitter: Vec<Jitter> = c.iter().filter_map(|c| c.jitter).collect();
    assert!(jitter
        .iter()
        .all(|j| j.brightness == 1.0 && j.contrast == 1.0));
    let sat: Vec<f64> = jitter.iter().map(|j| j.saturation).collect();
    assert_uniform("saturation", &sat, 0.99, 1.01);
    let hue: Vec<f64> = jitter.iter().map(|j| j.hue).collect();
    assert_uniform("hue", &hue, -0.01, 0.01);

    let boxes: Vec<EraseBox> = c.iter().filter_map(|c| c.erase).collect();
    assert!(boxes.iter().all(|b| b.w >= 1
        && b.h >= 1
        && b.x >= 0
        && b.y >= 0
        && b.x + b.w <= R
        && b.y + b.h <= R));
    // Aspect ratio (h/w): U(0.3, 1) or U(1, 1/0.3), equally likely.
    let tall = boxes.iter().filter(|b| b.h > b.w).count();
    let wide = boxes.iter().filter(|b| b.h < b.w).count();
    assert_frequency("erasing: taller than wide", tall, tall + wide, 0.5);
    // Where neither side reached the cutout's (ratio in [0.45, 2.2] keeps
    // area·ratio and area/ratio under r² for area ≤ 0.4·r²), the area
    // fraction is U(0.1, 0.4) up to the rounding of the sides (< 1 %).
    let r2 = (R * R) as f64;
    let moderate: Vec<&EraseBox> = boxes
        .iter()
        .filter(|b| (0.45..=2.2).contains(&(b.h as f64 / b.w as f64)))
        .collect();
    let area: Vec<f64> = moderate.iter().map(|b| (b.w * b.h) as f64 / r2).collect();
    assert!(area.iter().all(|a| (0.1 - 0.01..=0.4 + 0.01).contains(a)));
    let ks = ks_uniform(&area, 0.1, 0.4);
    eprintln!("erasing area: n {}, KS {ks:.4}", area.len());
    assert!(ks < ks_limit(area.len()) + 0.01);
    let ratios: Vec<f64> = boxes
        .iter()
        .filter(|b| b.w < R && b.h < R)
        .map(|b| b.h as f64 / b.w as f64)
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    eprintln!("erasing aspect ratios (unclamped boxes): {lo:.3} … {hi:.3}");
    assert!((0.3 * 0.97..0.32).contains(&lo), "smallest ratio {lo}");
    assert!((3.1..=1.0 / 0.3 * 1.03).contains(&hi), "largest ratio {hi}");
    // Positions uniform over the places the box fits.
    let rel: Vec<f64> = boxes
        .iter()
        .map(|b| (b.x as f64 + 0.5) / (R - b.w + 1) as f64)
        .chain(
            boxes
                .iter()
                .map(|b| (b.y as f64 + 0.5) / (R - b.h + 1) as f64),
        )
        .collect();
    let (m, _) = mean_var(&rel);
    assert!(
        (m - 0.5).abs() < 4.0 * (1.0 / 12.0 / rel.len() as f64).sqrt(),
        "erasing position mean {m}"
    );
}

#[test]
fn jitter_orders_are_uniform_permutations() {
    let mut rng = Rng::new(77).unwrap();
    let trials = 4800;
    let mut counts: HashMap<[ColorOp; 4], usize> = HashMap::new();
    for _ in 0..trials {
        let p = AugmentParams::draw(1, 8, &mut rng).unwrap();
        let mut sorted = p.jitter_order.map(ColorOp::index);
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3], "not a permutation");
        *counts.entry(p.jitter_order).or_default() += 1;
    }
    assert_eq!(counts.len(), 24, "every order appears");
    let e = trials as f64 / 24.0;
    let chi2: f64 = counts.values().map(|&c| (c as f64 - e).powi(2) / e).sum();
    eprintln!("jitter orders: χ² = {chi2:.1} (23 degrees of freedom)");
    // χ²(23) exceeds 49.7 with probability 0.001.
    assert!(chi2 < 49.7);
}

#[test]
fn draws_repeat_with_the_seed_and_consume_a_fixed_count() {
    let draw = |seed, n| AugmentParams::draw(n, 32, &mut Rng::new(seed).unwrap()).unwrap();
    assert_eq!(draw(3, 10), draw(3, 10));
    assert_ne!(draw(3, 10), draw(4, 10));
    assert_eq!(draw(3, 0).cutouts.len(), 0);
    // What follows a batch depends on n only, not on what was applied.
    let mut a = Rng::new(9).unwrap();
    let mut b = Rng::new(9).unwrap();
    AugmentParams::draw(6, 32, &mut a).unwrap();
    let mut config = AugmentConfig::pytti_classic();
    config.flip_p = 1.0;
    config.erase_p = 0.0;
    AugmentParams::draw_with(&config, 6, 32, &mut b).unwrap();
    let next = |r: &mut Rng| Vec::<f32>::try_from(&r.rand(&[4]).unwrap()).unwrap();
    assert_eq!(next(&mut a), next(&mut b));
}
