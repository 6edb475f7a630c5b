//! The whole optimisation step (docs/design.md §7) against the reference computation.
//!
//! `scripts/reference/gen_step_reference.py` runs ten steps of the VQGAN+CLIP
//! "z + quantize" loop as the notebooks and pytti-core compute it, with the
//! official modules (`clip/model.py`, taming's Encoder / Decoder /
//! VectorQuantizer2 / GumbelQuantize) on small random weights, on fixed cutout
//! placements and without cutout noise: straight-through quantisation →
//! `post_quant_conv` → decode → `(x + 1)/2` → clamp with pytti's gradient rule
//! → mirror-padded cutouts pooled to each perceptor's input → CLIP
//! normalisation → `encode_image` → spherical-distance prompt losses with
//! weights and stops (the image prompt location-aware, as pytti's
//! `LocationAwareMCIP`: its own cuts matched to the crops by
//! `linear_sum_assignment` of the centres, + 0.7), fractional scene weights, the direct init and
//! stabilisation losses → backward → `torch.optim.Adam` → z clamped to the
//! codebook's range. It records the loss of every step, the gradient of step 1,
//! the parameter after steps 1 and 10 and the images they decode to.
//!
//! Here zoetrope's own [`Guide::step`] and [`Adam`] run on the same weights,
//! start, placements (a [`CutoutSampler::with_fixed_placements`], with the
//! image prompt's cut placements), prompts (parsed and embedded, the image
//! prompt cut, by [`Guide::new`]), scene weights and targets
//! ([`Guide::target_of_image`]), for a VQModel, a GumbelVQ and the Unlimited
//! Palette, each with two perceptors at different input resolutions.
//!
//! Tolerances (fp32, CPU): the loss of every step to 1e-5 relative; the z
//! gradient of step 1, the parameter after 1 step and the decoded images to
//! 1e-4 relative (max |ours − reference| / max |reference|); the parameter
//! after 10 steps to 1e-4 or ten times the float64 distance the generator
//! measured for the case, whichever is larger (at most 2e-4; see
//! `run_case`).
//!
//! The gradient is the one the step handed to Adam: Adam clears `.grad`, but
//! after its first step the first moment is exactly `(1 − β1) · g` (moments
//! start at zero), so `exp_avg / (1 − β1)` is the step's gradient.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};
use zoetrope::guidance::adam::Adam;
use zoetrope::guidance::cutouts::{Crop, CutoutSampler};
use zoetrope::guidance::guide::{Guide, Perceptor, StepWeights};
use zoetrope::guidance::image::{ImageModel, ImageState};
use zoetrope::guidance::loss::WeightStop;
use zoetrope::models::clip::{Clip, ClipConfig};
use zoetrope::models::vqgan::Vqgan;
use zoetrope::rng::Rng;
use zoetrope::scene::prompt::{Prompt, PromptSource};

/// Relative tolerance of the gradient, the parameters and the images.
const TOL: f64 = 1e-4;
/// Relative tolerance of the loss of every step.
const LOSS_TOL: f64 = 1e-5;
/// CLIP's vocabulary: the fixtures keep only the token rows the prompts use.
const VOCAB: i64 = 49408;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/step_reference")
}

fn info() -> Value {
    let text = std::fs::read_to_string(dir().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .collect()
}

/// max |ours − reference| / max |reference|
fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size(), "shape");
    let ours = ours.to_kind(Kind::Double);
    let reference = reference.to_kind(Kind::Double);
    let diff = (&ours - &reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[])
}

fn check(case: &str, what: &str, ours: &Tensor, reference: &Tensor, tol: f64) {
    let e = rel_err(ours, reference);
    println!("{case}: {what}: relative error {e:.2e}");
    assert!(
        e <= tol,
        "{case}: {what}: relative error {e:.3e} > {tol:.0e}"
    );
}

/// A fixture CLIP: the official keys, the token embedding rebuilt to the full
/// vocabulary from the rows the prompts use (the others stay zero; no prompt
/// reads them).
fn load_clip(file: &str) -> Clip {
    let t = tensors(file);
    let (ids, rows) = (&t["token_embedding.ids"], &t["token_embedding.rows"]);
    let mut shapes: BTreeMap<String, Vec<i64>> = t
        .iter()
        .filter(|(k, _)| !k.starts_with("token_embedding."))
        .map(|(k, v)| (k.clone(), v.size()))
        .collect();
    shapes.insert("token_embedding.weight".into(), vec![VOCAB, rows.size()[1]]);
    let config = ClipConfig::infer(&shapes).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let clip = Clip::new(&vs.root(), &config).unwrap();
    let vars = vs.variables();
    assert_eq!(vars.len(), shapes.len(), "{file}: tensors of another model");
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let value = if name == "token_embedding.weight" {
                Tensor::zeros(var.size(), (Kind::Float, Device::Cpu)).index_copy(
                    0,
                    ids,
                    &rows.to_kind(Kind::Float),
                )
            } else {
                t.get(&name)
                    .unwrap_or_else(|| panic!("{file}: no {name}"))
                    .to_kind(Kind::Float)
            };
            var.copy_(&value);
        }
    });
    clip
}

/// Placements `[[x, y, size], …]` as written in cases.json.
fn crops_of(list: &Value) -> Vec<Crop> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| Crop {
            x: c[0].as_i64().unwrap(),
            y: c[1].as_i64().unwrap(),
            size: c[2].as_i64().unwrap(),
        })
        .collect()
}

fn perceptors(info: &Value) -> Vec<Perceptor> {
    let border = info["cutout_border"].as_f64().unwrap();
    assert_eq!(info["border_mode"], "mirror", "the sampler's default fill");
    info["perceptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let r = p["resolution"].as_i64().unwrap();
            let crops = crops_of(&p["crops"]);
            let sampler = CutoutSampler::new(crops.len(), 1.0, border, r)
                .unwrap()
                .with_fixed_placements(crops)
                .unwrap()
                .with_fixed_prompt_placements(crops_of(&p["prompt_crops"]))
                .unwrap();
            Perceptor {
                name: p["name"].as_str().unwrap().to_string(),
                clip: load_clip(p["file"].as_str().unwrap()),
                sampler,
            }
        })
        .collect()
}

/// Guide::new embedded every prompt as the reference did, and cut the image
/// prompt at its placements and embedded the cuts as the reference did.
fn check_prompt_embeddings(case: &str, guide: &Guide, names: &[String]) {
    let reference = tensors("prompts.safetensors");
    let located = guide.located().expect("the image prompt is location-aware");
    let mut cut = 0;
    for (row, prompt) in guide.prompts().iter().flatten().enumerate() {
        for (i, name) in names.iter().enumerate() {
            let Some(cuts) = located.cuts(row, i).unwrap() else {
                continue;
            };
            let what = format!("cuts of \"{}\" ({name})", prompt.label);
            let r = &reference[&format!("cuts:prompt.png:{name}")];
            check(case, &what, &cuts, r, TOL);
            cut += 1;
        }
    }
    assert_eq!(
        cut,
        names.len(),
        "one image prompt, cut for every perceptor"
    );
    for scene in guide.prompts() {
        for prompt in scene {
            let parsed = Prompt::parse(&prompt.label).unwrap();
            let key = match &parsed.source {
                PromptSource::Text(t) => format!("text:{t}"),
                PromptSource::Image(p) => format!("image:{}", p.display()),
            };
            for (e, name) in prompt.embeds.iter().zip(names) {
                let r = &reference[&format!("{key}:{name}")];
                check(
                    case,
                    &format!("embedding of \"{}\" ({name})", prompt.label),
                    &e.reshape([-1]),
                    r,
                    TOL,
                );
            }
        }
    }
}

/// Runs the case's ten steps with zoetrope's step and compares every record.
fn run_case(case: &str) {
    let info = info();
    let c = &info["cases"][case];
    let io = tensors(&format!("{case}.safetensors"));
    let perceptors = perceptors(&info);
    let names: Vec<String> = perceptors.iter().map(|p| p.name.clone()).collect();
    let scenes: Vec<Vec<Prompt>> = c["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|p| Prompt::parse(p.as_str().unwrap()).unwrap())
                .collect()
        })
        .collect();
    // The negative prompt's stop, chosen by the generator so that it stops
    // some cutouts' push and not others', reaches the step as written.
    let negative = WeightStop::at(&scenes[0][1].weight, scenes[0][1].stop.as_ref(), 0.0, 0.0);
    assert_eq!(negative, WeightStop::new(-0.5, c["stop"].as_f64()));
    let guide = Guide::new(perceptors, &scenes, &dir(), 0).unwrap();
    check_prompt_embeddings(case, &guide, &names);

    let model = match c["weights"].as_str() {
        Some(file) => ImageModel::Vqgan(Vqgan::load(&dir().join(file), Device::Cpu).unwrap()),
        None => ImageModel::Palette,
    };
    let (w, h) = (
        info["width"].as_i64().unwrap(),
        info["height"].as_i64().unwrap(),
    );
    let init_rgb = &io["init_rgb"];
    let mut state = ImageState::from_image(model, init_rgb).unwrap();
    assert_eq!((state.width(), state.height()), (w, h));
    state.set_param(&io["param0"]).unwrap();

    // The direct losses' targets, made from the images as a render makes them.
    let init = guide.target_of_image(&state, init_rgb).unwrap();
    let stab = guide
        .target_of_image(&state, &io["stabilization_rgb"])
        .unwrap();
    for (name, target) in [("init", &init), ("stabilization", &stab)] {
        if let Some(z_q) = &target.z_q {
            check(
                case,
                &format!("{name} target z_q"),
                z_q,
                &io[&format!("{name}_z_q")],
                1e-6,
            );
        }
    }

    let lr = c["lr"].as_f64().unwrap();
    assert_eq!(
        lr,
        state.default_lr(),
        "the image model's own learning rate"
    );
    let mut adam = Adam::new(state.param(), lr).unwrap();
    let steps = info["steps"].as_i64().unwrap();
    let scene_weights = &io["scene_weights"];
    let direct_init = WeightStop::weight(info["direct_init_weight"].as_f64().unwrap());
    let direct_stab = WeightStop::weight(info["direct_stabilization_weight"].as_f64().unwrap());
    // Nothing of the step draws from it: fixed placements, no noise.
    let mut rng = Rng::new(0).unwrap();
    let mut losses = Vec::new();
    for s in 0..steps {
        let weights = StepWeights {
            scene_weights: (0..scenes.len() as i64)
                .map(|k| scene_weights.double_value(&[s, k]))
                .collect(),
            // Constant weights and stops: any t evaluates them alike.
            prompt_weights: scenes
                .iter()
                .map(|ps| {
                    ps.iter()
                        .map(|p| WeightStop::at(&p.weight, p.stop.as_ref(), 0.0, 0.0))
                        .collect()
                })
                .collect(),
            direct_init: Some((direct_init, &init)),
            direct_stabilization: Some((direct_stab, &stab)),
            semantic_init: None,
            semantic_stabilization: None,
            loop_closing: None,
            smoothing: None,
            direct_images: Vec::new(),
        };
        let loss = guide
            .step(&mut state, &mut adam, &weights, &mut rng)
            .unwrap();
        losses.push(loss.double_value(&[]));
        if s == 0 {
            let [(_, exp_avg), _] = adam.tensors();
            let grad = exp_avg / (1.0 - adam.beta1);
            check(case, "z gradient of step 1", &grad, &io["grad1"], TOL);
            check(
                case,
                "parameter after step 1",
                state.param(),
                &io["param1"],
                TOL,
            );
            check(
                case,
                "image after step 1",
                &state.image().unwrap(),
                &io["image1"],
                TOL,
            );
        }
    }
    // z after ten steps: Adam divides each update by the gradient's
    // magnitude, so elements with tiny gradients (inside a code's cell, where
    // they change no image) carry rounding into their steps. The generator
    // measured how far its float32 run is from float64 (`param10_fp64`);
    // zoetrope rounds in another order and may be up to ten times that far
    // (its module docs). The image after ten steps stays at TOL.
    let fp64 = c["param10_fp64"].as_f64().expect("the case's param10_fp64");
    check(
        case,
        "parameter after step 10",
        state.param(),
        &io["param10"],
        TOL.max(10.0 * fp64),
    );
    check(
        case,
        "image after step 10",
        &state.image().unwrap(),
        &io["image10"],
        TOL,
    );
    let ours = Tensor::from_slice(&losses);
    check(case, "loss of every step", &ours, &io["loss"], LOSS_TOL);
}

#[test]
fn vqgan_step_equals_the_reference() {
    run_case("vq");
}

#[test]
fn gumbel_vqgan_step_equals_the_reference() {
    run_case("gumbel");
}

#[test]
fn palette_step_equals_the_reference() {
    run_case("palette");
}

/// The hook the reference cases run on: the given crops every time, no noise.
#[test]
fn fixed_placements_replace_the_draws() {
    let crops = vec![
        Crop {
            x: -2,
            y: 0,
            size: 12,
        },
        Crop {
            x: 5,
            y: 4,
            size: 9,
        },
    ];
    let sampler = CutoutSampler::new(40, 2.0, 0.25, 8)
        .unwrap()
        .with_fixed_placements(crops.clone())
        .unwrap();
    assert_eq!((sampler.cutouts, sampler.noise), (2, 0.0));
    let mut rng = Rng::new(0).unwrap();
    assert_eq!(sampler.place(20, 16, &mut rng).unwrap(), crops);
    assert_eq!(sampler.place(20, 16, &mut rng).unwrap(), crops);
    let image =
        Tensor::arange(3 * 16 * 20, (Kind::Float, Device::Cpu)).view([1, 3, 16, 20]) / 960.0;
    let a = sampler.sample(&image, &mut rng).unwrap();
    let b = sampler.sample(&image, &mut rng).unwrap();
    assert_eq!(a.size(), [2, 3, 8, 8]);
    assert!(
        a.equal(&b),
        "no noise: the same crops give the same cutouts"
    );
    assert!(CutoutSampler::new(4, 1.0, 0.0, 8)
        .unwrap()
        .with_fixed_placements(Vec::new())
        .is_err());
}
