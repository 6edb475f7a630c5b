//! CLIP parity with OpenAI's `clip/model.py` on random weights.
//!
//! `scripts/reference/gen_clip_fixtures.py` built two small models with the
//! official code (a ViT tower with 2 heads, a ModifiedResNet tower with 4-head
//! attention pooling and random BatchNorm statistics, causal text transformers),
//! saved their state dicts under the official keys and the official outputs.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{nn, Device, Kind, Tensor};
use zoetrope::models::clip::{Clip, ClipConfig, VisionConfig};
use zoetrope::ErrorKind;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip")
        .join(name)
}

fn load_io(tag: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(&format!("{tag}_io.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

/// max |a - b| / max |b|
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let num = (&a - &b).abs().max().double_value(&[]);
    let den = b.abs().max().double_value(&[]);
    num / den
}

fn check(tag: &str) -> Clip {
    let model = Clip::load(&fixture(&format!("{tag}_weights.safetensors")), Device::Cpu).unwrap();
    let io = load_io(tag);
    let img = tch::no_grad(|| model.encode_image(&io["image"]).unwrap());
    let txt = tch::no_grad(|| model.encode_text(&io["text"]).unwrap());
    let logits = tch::no_grad(|| model.logits(&io["image"], &io["text"]).unwrap());
    let (ei, et, el) = (
        rel_err(&img, &io["image_features"]),
        rel_err(&txt, &io["text_features"]),
        rel_err(&logits, &io["logits_per_image"]),
    );
    println!("{tag}: image {ei:.2e} text {et:.2e} logits {el:.2e}");
    assert!(ei <= 1e-4, "{tag} image features rel err {ei}");
    assert!(et <= 1e-4, "{tag} text features rel err {et}");
    assert!(el <= 1e-4, "{tag} logits rel err {el}");
    model
}

#[test]
fn vit_matches_official() {
    let m = check("vit");
    assert!(matches!(
        m.config().vision,
        VisionConfig::ViT {
            heads: 2,
            layers: 2,
            patch_size: 8,
            width: 128
        }
    ));
    assert_eq!((m.input_resolution(), m.embed_dim()), (32, 64));
    assert_eq!(m.config().transformer_heads, 2);
}

#[test]
fn resnet_matches_official() {
    let m = check("rn");
    assert_eq!(
        m.config().vision,
        VisionConfig::ResNet {
            layers: [2, 1, 1, 1],
            width: 8,
            heads: 4
        }
    );
    assert_eq!((m.input_resolution(), m.embed_dim()), (64, 48));
}

#[test]
fn bf16_stays_close_to_fp32() {
    let mut m = Clip::load(&fixture("vit_weights.safetensors"), Device::Cpu).unwrap();
    m.set_kind(Kind::BFloat16).unwrap();
    assert_eq!(m.kind(), Kind::BFloat16);
    let io = load_io("vit");
    let img = tch::no_grad(|| m.encode_image(&io["image"]).unwrap());
    let txt = tch::no_grad(|| m.encode_text(&io["text"]).unwrap());
    assert_eq!(img.kind(), Kind::BFloat16);
    let (ei, et) = (
        rel_err(&img, &io["image_features"]),
        rel_err(&txt, &io["text_features"]),
    );
    assert!(ei < 5e-2 && et < 5e-2, "bf16 rel err image {ei} text {et}");
    // Loading straight into bf16 gives the same weights as converting after.
    let m2 = Clip::load_as(
        &fixture("rn_weights.safetensors"),
        Device::Cpu,
        Kind::BFloat16,
    )
    .unwrap();
    let rn = load_io("rn");
    let img = tch::no_grad(|| m2.encode_image(&rn["image"]).unwrap());
    let ei = rel_err(&img, &rn["image_features"]);
    assert!(ei < 5e-2, "rn bf16 rel err {ei}");
}

#[test]
fn plain_varstore_load_works_with_official_keys() {
    // The ViT state dict has no integer buffers, so tch's own loader applies.
    let shapes = Tensor::read_safetensors(fixture("vit_weights.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    let config = ClipConfig::infer(&shapes).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Clip::new(&vs.root(), &config).unwrap();
    vs.load(fixture("vit_weights.safetensors")).unwrap();
    let io = load_io("vit");
    let txt = tch::no_grad(|| model.encode_text(&io["text"]).unwrap());
    assert!(rel_err(&txt, &io["text_features"]) <= 1e-4);
}

#[test]
fn gradients_reach_the_image() {
    let m = Clip::load(&fixture("rn_weights.safetensors"), Device::Cpu).unwrap();
    let image = load_io("rn")["image"].copy().set_requires_grad(true);
    let loss = m.encode_image(&image).unwrap().square().sum(Kind::Float);
    loss.backward();
    let g = image.grad();
    assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn weight_file_errors_name_the_file() {
    let e = Clip::load(
        std::path::Path::new("/nonexistent/clip.safetensors"),
        Device::Cpu,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(e.message.contains("/nonexistent/clip.safetensors"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let mut tensors = Tensor::read_safetensors(fixture("vit_weights.safetensors")).unwrap();
    tensors.retain(|(k, _)| k != "visual.ln_post.weight");
    let path = dir.path().join("broken.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let e = Clip::load(&path, Device::Cpu).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(
        e.message.contains("broken.safetensors") && e.message.contains("visual.ln_post.weight"),
        "{e}"
    );

    let mut tensors = Tensor::read_safetensors(fixture("vit_weights.safetensors")).unwrap();
    tensors.push((
        "visual.extra.weight".to_string(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    let path = dir.path().join("extra.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let e = Clip::load(&path, Device::Cpu).unwrap_err();
    assert!(e.message.contains("visual.extra.weight"), "{e}");

    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let e = Clip::load(&path, Device::Cpu).unwrap_err();
    assert!(e.message.contains("garbage.safetensors"), "{e}");
}

#[test]
fn missing_batchnorm_counters_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = Tensor::read_safetensors(fixture("rn_weights.safetensors")).unwrap();
    let before = tensors.len();
    tensors.retain(|(k, _)| !k.ends_with("num_batches_tracked"));
    assert!(tensors.len() < before);
    let path = dir.path().join("no_counters.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let m = Clip::load(&path, Device::Cpu).unwrap();
    let io = load_io("rn");
    let img = tch::no_grad(|| m.encode_image(&io["image"]).unwrap());
    assert!(rel_err(&img, &io["image_features"]) <= 1e-4);
}

#[test]
fn fp16_files_with_metadata_keys_load() {
    // OpenAI's archives hold fp16 weights and three scalar metadata entries.
    let dir = tempfile::tempdir().unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture("vit_weights.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_kind(Kind::Half)))
            .collect();
    for (k, v) in [
        ("input_resolution", 32),
        ("context_length", 16),
        ("vocab_size", 512),
    ] {
        tensors.push((k.to_string(), Tensor::from(v as i64)));
    }
    let path = dir.path().join("fp16.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let m = Clip::load(&path, Device::Cpu).unwrap();
    assert_eq!(m.kind(), Kind::Float);
    let io = load_io("vit");
    let img = tch::no_grad(|| m.encode_image(&io["image"]).unwrap());
    let ei = rel_err(&img, &io["image_features"]);
    assert!(ei > 0.0 && ei < 2e-2, "fp16-rounded weights rel err {ei}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let m = Clip::load(&fixture("rn_weights.safetensors"), Device::Cpu).unwrap();
    let wrong_size = Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    assert!(m
        .encode_image(&wrong_size)
        .unwrap_err()
        .message
        .contains("64, 64"));
    let float_tokens = Tensor::zeros([1, 12], (Kind::Float, Device::Cpu));
    assert!(m.encode_text(&float_tokens).is_err());
    let too_long = Tensor::zeros([1, 13], (Kind::Int64, Device::Cpu));
    assert!(m.encode_text(&too_long).is_err());
}
