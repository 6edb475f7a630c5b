//! Losses: spherical distance, the weight/stop gradient rule for positive and
//! negative prompts, scene weighting, direct losses and the gradient tricks.

use crate::support::opts;
use std::f64::consts::PI;
use tch::{Kind, Tensor};
use zoetrope::guidance::loss::{
    clamp_grad_rule, clamp_straight_through, scene_prompt_loss, spherical_distance,
    spherical_distances, straight_through, table_row, tv_loss, weighted_table, weighted_with_stop,
    ClampWithGrad, DirectLoss, PromptLoss, ScenePrompts, WeightStop,
};
use zoetrope::ErrorKind;

fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// A unit embedding at angle θ from the x axis, as a [1, 2] leaf. Against the
/// prompt [1, 0], d = 2·arcsin(sin(θ/2))² = θ²/2 and the gradient of d with
/// respect to the embedding is θ·(−sin θ, cos θ).
fn at_angle(theta: f64) -> Tensor {
    Tensor::from_slice(&[theta.cos() as f32, theta.sin() as f32])
        .view([1, 2])
        .set_requires_grad(true)
}

fn x_axis_prompt() -> PromptLoss {
    PromptLoss::new("red", vec![Tensor::from_slice(&[1.0f32, 0.0])]).unwrap()
}

/// Value and embedding gradient of a one-cutout prompt loss at angle θ.
fn prompt_at(theta: f64, ws: WeightStop) -> (f64, Vec<f64>) {
    let x = at_angle(theta);
    let loss = x_axis_prompt().loss(&[x.shallow_clone()], ws).unwrap();
    loss.backward();
    (loss.double_value(&[]), vals(&x.grad()))
}

#[test]
fn spherical_distance_known_values() {
    let x = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 3.0, -2.0, 0.0, 1.0, 1.0]).view([4, 2]);
    let y = Tensor::from_slice(&[5.0f32, 0.0]);
    let d = vals(&spherical_distance(&x, &y).unwrap());
    let expected = [0.0, PI * PI / 8.0, PI * PI / 2.0, PI * PI / 32.0];
    for (got, want) in d.iter().zip(expected) {
        assert!(close(*got, want, 1e-5), "{d:?}");
    }
    // [1, D] broadcasts like [D]; [N, D] pairs row by row.
    let d1 = spherical_distance(&x, &y.view([1, 2])).unwrap();
    assert_eq!(vals(&d1), d);
    let paired = spherical_distance(&x, &x).unwrap();
    assert!(vals(&paired).iter().all(|v| v.abs() < 1e-6));
    // Identical and opposite directions keep a finite gradient.
    let xg = x.set_requires_grad(true);
    spherical_distance(&xg, &y)
        .unwrap()
        .sum(Kind::Float)
        .backward();
    assert!(vals(&xg.grad()).iter().all(|g| g.is_finite()));
    assert!(spherical_distance(&x, &Tensor::zeros([3], opts())).is_err());
    assert!(spherical_distance(&x, &Tensor::zeros([3, 2], opts())).is_err());
}

#[test]
fn value_is_weight_times_mean_distance() {
    let theta = 0.6;
    let d = theta * theta / 2.0;
    for ws in [
        WeightStop::weight(1.0),
        WeightStop::weight(2.5),
        WeightStop::weight(-1.0),
        WeightStop::new(1.0, Some(0.5)),   // stopped: value unchanged
        WeightStop::new(-2.0, Some(-0.1)), // stopped: value unchanged
    ] {
        let (value, _) = prompt_at(theta, ws);
        assert!(close(value, ws.weight * d, 1e-5), "{ws:?}: {value}");
    }
}

#[test]
fn positive_prompt_pulls_until_distance_falls_under_stop() {
    let theta: f64 = 0.6; // d = 0.18
    let pull = [-theta * theta.sin(), theta * theta.cos()];
    // Above the stop (0.1): the full gradient of d.
    let (_, g) = prompt_at(theta, WeightStop::new(1.0, Some(0.1)));
    assert!(
        close(g[0], pull[0], 1e-4) && close(g[1], pull[1], 1e-4),
        "{g:?}"
    );
    // No stop: the same.
    let (_, g) = prompt_at(theta, WeightStop::weight(1.0));
    assert!(
        close(g[0], pull[0], 1e-4) && close(g[1], pull[1], 1e-4),
        "{g:?}"
    );
    // Weight scales the gradient by |w|.
    let (_, g) = prompt_at(theta, WeightStop::new(3.0, Some(0.1)));
    assert!(close(g[0], 3.0 * pull[0], 1e-4) && close(g[1], 3.0 * pull[1], 1e-4));
    // Under the stop (0.2 > 0.18): no gradient.
    let (_, g) = prompt_at(theta, WeightStop::new(1.0, Some(0.2)));
    assert_eq!(g, vec![0.0, 0.0]);
    // A descent step along −grad reduces the angle (pulls toward the prompt).
    let (_, g) = prompt_at(theta, WeightStop::weight(1.0));
    let x = [theta.cos() - 0.1 * g[0], theta.sin() - 0.1 * g[1]];
    assert!(x[1].atan2(x[0]) < theta);
}

#[test]
fn negative_prompt_pushes_until_distance_exceeds_stop() {
    // text:-1:-.9 — pushes away while d < 0.9.
    let ws = WeightStop::new(-1.0, Some(-0.9));
    let theta: f64 = 1.0; // d = 0.5 < 0.9
    let (value, g) = prompt_at(theta, ws);
    assert!(close(value, -0.5, 1e-5));
    let push = [theta * theta.sin(), -theta * theta.cos()];
    assert!(
        close(g[0], push[0], 1e-4) && close(g[1], push[1], 1e-4),
        "{g:?}"
    );
    // A descent step increases the angle (pushes away from the prompt).
    let x = [theta.cos() - 0.1 * g[0], theta.sin() - 0.1 * g[1]];
    assert!(x[1].atan2(x[0]) > theta);
    // Past the stop: d = 1.125 > 0.9, no more pushing, value still −d.
    let (value, g) = prompt_at(1.5, ws);
    assert!(close(value, -1.125, 1e-5));
    assert_eq!(g, vec![0.0, 0.0]);
    // Without a stop a negative prompt pushes forever.
    let (_, g) = prompt_at(1.5, WeightStop::weight(-1.0));
    assert!(g[0].abs() + g[1].abs() > 1.0);
}

#[test]
fn stop_applies_per_cutout() {
    // Two cutouts: θ = 0.3 (d = 0.045, under the stop) and θ = 1.0 (d = 0.5).
    let x = Tensor::from_slice(&[
        0.3f64.cos() as f32,
        0.3f64.sin() as f32,
        1.0f64.cos() as f32,
        1.0f64.sin() as f32,
    ])
    .view([2, 2])
    .set_requires_grad(true);
    let loss = x_axis_prompt()
        .loss(&[x.shallow_clone()], WeightStop::new(2.0, Some(0.1)))
        .unwrap();
    loss.backward();
    // value = 2 · mean(0.045, 0.5)
    assert!(close(loss.double_value(&[]), 0.545, 1e-5));
    let g = vals(&x.grad());
    assert_eq!(&g[0..2], &[0.0, 0.0]);
    // mean over 2 cutouts: 2 · ½ · θ·(−sin θ, cos θ)
    assert!(close(g[2], -1.0f64.sin(), 1e-4) && close(g[3], 1.0f64.cos(), 1e-4));
}

#[test]
fn weight_zero_gives_zero_loss_and_gradient() {
    let x = at_angle(0.8);
    let loss = x_axis_prompt()
        .loss(&[x.shallow_clone()], WeightStop::new(0.0, Some(0.3)))
        .unwrap();
    assert_eq!(loss.double_value(&[]), 0.0);
    loss.backward();
    assert_eq!(vals(&x.grad()), vec![0.0, 0.0]);
    let raw = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
    let zero = weighted_with_stop(&raw, WeightStop::weight(0.0)).unwrap();
    zero.backward();
    assert_eq!(zero.double_value(&[]), 0.0);
    assert_eq!(vals(&raw.grad()), vec![0.0, 0.0]);
}

#[test]
fn infinite_stops_stay_finite() {
    let raw = Tensor::from_slice(&[0.5f32, 1.5]).set_requires_grad(true);
    let never = weighted_with_stop(&raw, WeightStop::new(1.0, Some(f64::INFINITY))).unwrap();
    never.backward();
    assert!(close(never.double_value(&[]), 1.0, 1e-6));
    assert_eq!(vals(&raw.grad()), vec![0.0, 0.0]);
    let raw = Tensor::from_slice(&[0.5f32, 1.5]).set_requires_grad(true);
    let always = weighted_with_stop(&raw, WeightStop::new(1.0, Some(f64::NEG_INFINITY))).unwrap();
    always.backward();
    assert_eq!(vals(&raw.grad()), vec![0.5, 0.5]);
}

#[test]
fn scene_weights_combine_prompt_losses() {
    let x = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0])
        .view([2, 2])
        .set_requires_grad(true);
    let embeds = [x.shallow_clone()];
    let a = PromptLoss::new("a", vec![Tensor::from_slice(&[1.0f32, 0.0])]).unwrap();
    let b = PromptLoss::new("b", vec![Tensor::from_slice(&[0.0f32, 1.0])]).unwrap();
    let c = PromptLoss::new("c", vec![Tensor::from_slice(&[-1.0f32, 0.0])]).unwrap();
    // Distances: a → (0, π²/8), b → (π²/8, 0), c → (π²/2, π²/8).
    let q = PI * PI / 8.0;
    let la = q / 2.0;
    let lb = 2.0 * q / 2.0;
    let lc = -(4.0 * q + q) / 2.0;
    let scenes = [
        ScenePrompts {
            weight: 0.25,
            prompts: vec![(&a, WeightStop::weight(1.0)), (&b, WeightStop::weight(2.0))],
        },
        ScenePrompts {
            weight: 0.75,
            prompts: vec![
                (&c, WeightStop::weight(-1.0)),
                (&a, WeightStop::weight(0.0)),
            ],
        },
        ScenePrompts {
            weight: 0.0,
            prompts: vec![(&b, WeightStop::weight(100.0))],
        },
    ];
    let total = scene_prompt_loss(&scenes, &embeds).unwrap();
    let expected = 0.25 * (la + lb) + 0.75 * lc;
    assert!(close(total.double_value(&[]), expected, 1e-5));
    total.backward();
    assert!(vals(&x.grad()).iter().all(|g| g.is_finite()));

    // Equivalent to summing the weighted losses by hand.
    let by_hand = a.loss(&embeds, WeightStop::weight(1.0)).unwrap() * 0.25
        + b.loss(&embeds, WeightStop::weight(2.0)).unwrap() * 0.25
        + c.loss(&embeds, WeightStop::weight(-1.0)).unwrap() * 0.75;
    assert!(close(by_hand.double_value(&[]), expected, 1e-5));

    // Nothing active: a zero that still supports backward.
    let none = scene_prompt_loss(&scenes[2..], &embeds).unwrap();
    assert_eq!(none.double_value(&[]), 0.0);
    none.backward();
}

#[test]
fn perceptors_count_equally() {
    // Perceptor 0 (D = 2): one cutout at distance 0 and one at π²/8.
    // Perceptor 1 (D = 3): two cutouts at π²/2.
    let p0 = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let p1 = Tensor::from_slice(&[0.0f32, 0.0, -1.0, 0.0, 0.0, -2.0]).view([2, 3]);
    let prompt = PromptLoss::new(
        "two perceptors",
        vec![
            Tensor::from_slice(&[1.0f32, 0.0]),
            Tensor::from_slice(&[0.0f32, 0.0, 1.0]),
        ],
    )
    .unwrap();
    let d = prompt
        .distances(&[p0.shallow_clone(), p1.shallow_clone()])
        .unwrap();
    assert_eq!(d.size(), vec![4]);
    let loss = prompt.loss(&[p0, p1], WeightStop::weight(1.0)).unwrap();
    let expected = (PI * PI / 8.0 + 2.0 * PI * PI / 2.0) / 4.0;
    assert!(close(loss.double_value(&[]), expected, 1e-5));
    assert!(prompt.distances(&[Tensor::zeros([2, 2], opts())]).is_err());
}

#[test]
fn semantic_loss_compares_embeddings_per_cutout() {
    let target = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let semantic = PromptLoss::semantic("init image", vec![target]).unwrap();
    assert!(semantic.label.contains("semantic"));
    let current = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0])
        .view([2, 2])
        .set_requires_grad(true);
    // Paired: cutout 0 matches, cutout 1 is π²/8 away.
    let loss = semantic
        .loss(&[current.shallow_clone()], WeightStop::new(1.0, Some(0.1)))
        .unwrap();
    assert!(close(loss.double_value(&[]), PI * PI / 16.0, 1e-5));
    loss.backward();
    let g = vals(&current.grad());
    assert_eq!(&g[0..2], &[0.0, 0.0]);
    assert!(g[3] < 0.0, "cutout 1 is pulled toward (0, 1): {g:?}");
}

#[test]
fn direct_losses_follow_pytti() {
    let zq_target = Tensor::zeros([1, 4, 2, 2], opts());
    let rgb_target = Tensor::zeros([1, 3, 4, 4], opts());
    let zq = Tensor::full([1, 4, 2, 2], 2.0, opts()).set_requires_grad(true);
    let rgb = Tensor::full([1, 3, 4, 4], 0.5, opts()).set_requires_grad(true);
    let latent = DirectLoss::latent("direct_init_weight", &zq_target, &rgb_target);
    let raw = latent.raw(Some(&zq), &rgb).unwrap();
    // MSE(z_q)/2 + MSE(rgb)/10 = 4/2 + 0.25/10
    assert!(close(raw.double_value(&[]), 2.025, 1e-6));
    let loss = latent
        .loss(Some(&zq), &rgb, WeightStop::weight(0.5))
        .unwrap();
    assert!(close(loss.double_value(&[]), 1.0125, 1e-6));
    loss.backward();
    // ∂/∂z_q = 0.5 · ½ · 2(z_q − t)/16 per element
    assert!(vals(&zq.grad())
        .iter()
        .all(|g| close(*g, 0.5 * 0.5 * 4.0 / 16.0, 1e-6)));

    // Unlimited Palette: plain RGB MSE.
    let pixels = DirectLoss::rgb("direct_stabilization_weight", &rgb_target);
    let raw = pixels.raw(None, &rgb).unwrap();
    assert!(close(raw.double_value(&[]), 0.25, 1e-6));

    // Stop on the scalar: once the MSE is under the stop, no gradient.
    let rgb2 = Tensor::full([1, 3, 4, 4], 0.5, opts()).set_requires_grad(true);
    let stopped = pixels
        .loss(None, &rgb2, WeightStop::new(1.0, Some(0.3)))
        .unwrap();
    assert!(close(stopped.double_value(&[]), 0.25, 1e-6));
    stopped.backward();
    assert!(vals(&rgb2.grad()).iter().all(|g| *g == 0.0));

    // A VQGAN target without z_q, or a wrongly sized image, is reported.
    assert!(latent.raw(None, &rgb).is_err());
    let err = pixels
        .raw(None, &Tensor::zeros([1, 3, 8, 8], opts()))
        .unwrap_err();
    assert!(err.message.contains("direct_stabilization_weight"), "{err}");
}

#[test]
fn non_finite_weights_name_the_prompt() {
    let x = at_angle(0.5);
    let err = x_axis_prompt()
        .loss(&[x], WeightStop::weight(f64::NAN))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("\"red\""), "{err}");
}

#[test]
fn clamp_with_grad_passes_only_inward_gradients() {
    // Upstream gradients w: the loss is Σ w · clamp(x).
    let x_vals = [-0.5f32, 0.3, 1.4, 1.2, -0.2, 0.9];
    let w_vals = [1.0f32, 1.0, 1.0, -1.0, -1.0, -1.0];
    let a = Tensor::from_slice(&x_vals).set_requires_grad(true);
    let x = &a * 2.0 - &a; // an upstream graph: x = a
    let w = Tensor::from_slice(&w_vals);
    let clamp = ClampWithGrad::new(&x, 0.0, 1.0).unwrap();
    assert_eq!(
        vals(clamp.output()),
        vec![0.0, 0.30000001192092896, 1.0, 1.0, 0.0, 0.8999999761581421]
    );
    // Another path to `a` that does not go through the clamp.
    let loss = (clamp.output() * &w).sum(Kind::Float) + a.sum(Kind::Float);
    clamp.backward(&loss).unwrap();
    // −0.5 with w = +1: descent pushes further below 0 → blocked.
    //  0.3 inside → passes.  1.4 with w = +1: descent lowers it → passes.
    //  1.2 with w = −1: descent raises it → blocked.  −0.2 with w = −1 → passes.
    let expected = [0.0, 1.0, 1.0, 0.0, -1.0, -1.0];
    let g = vals(&a.grad());
    for i in 0..6 {
        assert!(close(g[i], expected[i] + 1.0, 1e-6), "{g:?}");
    }

    // The rule on its own.
    let rule = clamp_grad_rule(&Tensor::from_slice(&x_vals), &w, 0.0, 1.0).unwrap();
    assert_eq!(vals(&rule), expected.to_vec());

    // The single-pass approximation passes everything (documented).
    let b = Tensor::from_slice(&x_vals).set_requires_grad(true);
    let st = clamp_straight_through(&b, 0.0, 1.0).unwrap();
    assert_eq!(vals(&st), vals(clamp.output()));
    (st * &w).sum(Kind::Float).backward();
    assert_eq!(
        vals(&b.grad()),
        w_vals.iter().map(|v| *v as f64).collect::<Vec<_>>()
    );
}

#[test]
fn straight_through_quantisation() {
    let z = Tensor::from_slice(&[0.2f32, -0.7, 1.3]).set_requires_grad(true);
    let z_q = Tensor::from_slice(&[0.0f32, -1.0, 1.0]);
    let out = straight_through(&z, &z_q).unwrap();
    assert_eq!(vals(&out), vec![0.0, -1.0, 1.0]);
    (out * Tensor::from_slice(&[1.0f32, 2.0, 3.0]))
        .sum(Kind::Float)
        .backward();
    assert_eq!(vals(&z.grad()), vec![1.0, 2.0, 3.0]);
    assert!(straight_through(&z, &Tensor::zeros([2], opts())).is_err());
}

/// The device-side weight table the render's step uses: rows of
/// (scale, weight, stop), value and gradient worked out by hand.
#[test]
fn weighted_table_applies_scale_weight_and_stop_per_row() {
    let raw = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0])
        .view([2, 2])
        .set_requires_grad(true);
    // Row 0: scale 1, weight 2, no stop. Row 1: scale 0.5, weight −1, stop −3.5.
    let mut rows = table_row(1.0, WeightStop::weight(2.0)).to_vec();
    rows.extend(table_row(0.5, WeightStop::new(-1.0, Some(-3.5))));
    let table = Tensor::from_slice(&rows).view([2, 3]);
    let loss = weighted_table(&raw, &table).unwrap();
    // 1 · 2 · mean(1, 2) + 0.5 · (−1) · mean(3, 4) = 3 − 1.75
    assert!(close(loss.double_value(&[]), 1.25, 1e-6));
    loss.backward();
    // Row 0: 1 · |2| · (+1) / 2 each. Row 1: signed = (−3, −4); only −3 is
    // above the stop −3.5, so 0.5 · |−1| · (−1) / 2 there and 0 for −4.
    let g = vals(&raw.grad());
    let want = [1.0, 1.0, -0.25, 0.0];
    for (a, b) in g.iter().zip(want) {
        assert!(close(*a, b, 1e-6), "{g:?}");
    }
    // A zero row contributes nothing and no gradient.
    let zero = Tensor::from_slice(&table_row(0.0, WeightStop::weight(3.0))).view([1, 3]);
    let x = Tensor::from_slice(&[5.0f32, 7.0])
        .view([1, 2])
        .set_requires_grad(true);
    let l = weighted_table(&x, &zero).unwrap();
    l.backward();
    assert_eq!(l.double_value(&[]), 0.0);
    assert_eq!(vals(&x.grad()), vec![0.0, 0.0]);
    // Shapes are checked.
    assert!(weighted_table(&x, &table).is_err());
}

/// The batched distances of all prompts at once equal the per-prompt ones.
#[test]
fn batched_distances_equal_per_prompt_distances() {
    let mut rng = zoetrope::rng::Rng::new(11).unwrap();
    let x = rng.randn(&[5, 8]).unwrap();
    let targets = rng.randn(&[3, 8]).unwrap();
    let batched = spherical_distances(&x, &targets).unwrap();
    assert_eq!(batched.size(), vec![3, 5]);
    for p in 0..3 {
        let one = spherical_distance(&x, &targets.get(p)).unwrap();
        let diff = (&batched.get(p) - &one).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "prompt {p}: {diff}");
    }
    assert!(spherical_distances(&x, &rng.randn(&[3, 7]).unwrap()).is_err());
}

/// pytti's smoothing loss by hand on a 2×2 image `[[a, b], [c, d]] = [[0, 1],
/// [2, 4]]`: with the replicated right column and bottom row the differences
/// are `b−a, 0, d−c, 0` across and `c−a, d−b, 0, 0` down, so
/// `tv = ((b−a)² + (d−c)² + (c−a)² + (d−b)²) / 4 = (1 + 4 + 4 + 9) / 4 = 4.5`
/// and `∂tv = ((−2(b−a) − 2(c−a)), (2(b−a) − 2(d−b)), (2(c−a) − 2(d−c)),
/// (2(d−c) + 2(d−b))) / 4 = (−1.5, −1, 0, 2.5)`.
#[test]
fn tv_loss_hand_computed() {
    let img = Tensor::from_slice(&[0.0f64, 1.0, 2.0, 4.0])
        .view([1, 1, 2, 2])
        .set_requires_grad(true);
    let tv = tv_loss(&img).unwrap();
    assert_eq!(tv.size(), [1]);
    assert!(close(vals(&tv)[0], 4.5, 1e-12));
    tv.sum(Kind::Double).backward();
    let g = vals(&img.grad());
    for (got, want) in g.iter().zip([-1.5, -1.0, 0.0, 2.5]) {
        assert!(close(*got, want, 1e-12), "{g:?}");
    }
    // Weighted as pytti's Loss.forward: value w · tv, gradient w · ∂tv.
    let img = img.detach().set_requires_grad(true);
    let loss = weighted_with_stop(&tv_loss(&img).unwrap(), WeightStop::weight(0.5)).unwrap();
    assert!(close(vals(&loss)[0], 2.25, 1e-6));
    loss.backward();
    let g = vals(&img.grad());
    for (got, want) in g.iter().zip([-0.75, -0.5, 0.0, 1.25]) {
        assert!(close(*got, want, 1e-6), "{g:?}");
    }
}

/// Against pytti-core's `tv_loss` (LossAug/TVLossClass.py) evaluated with
/// torch in float64 on `sin(0.37 · i)` for the flat index `i` of a
/// `[2, 3, 4, 5]` tensor: per-image values, the first gradients of
/// `Σ tv` and the gradient's L1 norm.
#[test]
fn tv_loss_matches_pytti() {
    let x = (Tensor::arange(120, (Kind::Double, tch::Device::Cpu)) * 0.37)
        .sin()
        .view([2, 3, 4, 5])
        .set_requires_grad(true);
    let tv = tv_loss(&x).unwrap();
    let v = vals(&tv);
    assert!(close(v[0], 1.002532501628, 1e-11), "{v:?}");
    assert!(close(v[1], 1.002698742702, 1e-11), "{v:?}");
    tv.sum(Kind::Double).backward();
    let g = vals(&x.grad());
    let want = [
        -0.044096354498,
        -0.012866902932,
        0.008050175852,
        0.027877701099,
        0.042778588898,
        0.087236542587,
        0.071333123150,
        0.046928621519,
    ];
    for (got, want) in g.iter().zip(want) {
        assert!(close(*got, want, 1e-11), "{g:?}");
    }
    let l1: f64 = g.iter().map(|v| v.abs()).sum();
    assert!(close(l1, 5.570317631368, 1e-10), "{l1}");
}

#[test]
fn tv_loss_rejects_a_flat_tensor() {
    assert!(tv_loss(&Tensor::zeros([4], opts())).is_err());
}
