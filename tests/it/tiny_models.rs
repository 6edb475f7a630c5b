//! `zoetrope weights tiny`: the generated untrained models load with the real
//! model code, pass the full shape checks, resolve by name, carry the
//! "untrained" metadata, are byte-identical when regenerated, and decode to
//! varied colours. No network, no Python.

use std::path::Path;
use tch::{Device, Kind, Tensor};
use zoetrope::models::clip::{Clip, Tokenizer};
use zoetrope::models::tiny::{
    is_untrained, tiny_clip_config, tiny_vqgan_config, write_tiny_models, write_tiny_models_with,
    TINY_CLIP, TINY_CLIP_FILE, TINY_VQGAN, TINY_VQGAN_FILE,
};
use zoetrope::models::vqgan::Vqgan;
use zoetrope::models::weights::{
    full_clip_check, full_vqgan_check, read_shapes, read_sidecar, sha256_file, verify_model,
    Manifest, ModelKind, ShapeChecks, SourceFormat, WeightsStore,
};
use zoetrope::rng::Rng;
use zoetrope::ErrorKind;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_zoetrope")
}

#[test]
fn generation_is_deterministic_and_idempotent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pa = write_tiny_models(a.path()).unwrap();
    let pb = write_tiny_models(b.path()).unwrap();
    assert_eq!(pa.len(), 2);
    assert_eq!(pa[0], a.path().join(TINY_CLIP_FILE));
    assert_eq!(pa[1], a.path().join(TINY_VQGAN_FILE));
    for (x, y) in pa.iter().zip(&pb) {
        let (bx, by) = (std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        assert!(bx.len() > 1_000_000);
        assert!(bx == by, "{} and {} differ", x.display(), y.display());
        assert_eq!(read_sidecar(x).unwrap(), sha256_file(x).unwrap());
    }
    // A second run skips identical files.
    let again = write_tiny_models_with(a.path(), false).unwrap();
    assert!(again.iter().all(|f| !f.written));
    // A different file in the way is refused without --force, replaced with it.
    std::fs::write(&pa[1], b"not a model").unwrap();
    let e = write_tiny_models_with(a.path(), false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(e.message.contains("--force"), "{}", e.message);
    let forced = write_tiny_models_with(a.path(), true).unwrap();
    assert!(!forced[0].written && forced[1].written);
    assert!(std::fs::read(&pa[1]).unwrap() == std::fs::read(&pb[1]).unwrap());
}

#[test]
fn models_load_pass_full_checks_and_resolve_by_name() {
    let t = tempfile::tempdir().unwrap();
    write_tiny_models(t.path()).unwrap();
    let store = WeightsStore::new(t.path(), Manifest::builtin());
    let clip_path = store.resolve(ModelKind::Clip, "tiny-clip").unwrap();
    let vq_path = store.resolve(ModelKind::Vqgan, "tiny_vqgan").unwrap();
    assert_eq!(clip_path, t.path().join(TINY_CLIP_FILE));
    assert_eq!(vq_path, t.path().join(TINY_VQGAN_FILE));

    let desc = full_clip_check(&read_shapes(&clip_path).unwrap()).unwrap();
    assert!(desc.contains("vocabulary 49408"), "{desc}");
    full_vqgan_check(&read_shapes(&vq_path).unwrap()).unwrap();
    for (kind, name, path) in [
        (ModelKind::Clip, TINY_CLIP, &clip_path),
        (ModelKind::Vqgan, TINY_VQGAN, &vq_path),
    ] {
        let entry = store.manifest.find(Some(kind), name).unwrap();
        assert_eq!(entry.format, SourceFormat::Generated);
        let r = verify_model(kind, path, Some(entry), &ShapeChecks::full()).unwrap();
        assert!(r.ok(), "{:?}", r.problems());
        assert!(is_untrained(path));
    }
    // The official fixtures are not marked untrained.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/vit_weights.safetensors");
    assert!(!is_untrained(&fixture));
    assert!(!is_untrained(&t.path().join("absent.safetensors")));

    let clip = Clip::load(&clip_path, Device::Cpu).unwrap();
    assert_eq!(clip.config(), &tiny_clip_config());
    let vq = Vqgan::load(&vq_path, Device::Cpu).unwrap();
    assert_eq!(vq.config(), &tiny_vqgan_config());
    assert_eq!(vq.factor(), 8);

    // The real tokenizer's ids fit the vocabulary; embeddings are finite and
    // differ between prompts.
    let tokens = Tokenizer::shared()
        .tokenize(&["a lighthouse at dusk", "a bowl of fruit"], 77, true)
        .unwrap();
    let text = clip.encode_text(&tokens).unwrap();
    assert_eq!(text.size(), [2, 64]);
    let img = Rng::new(1).unwrap().rand(&[1, 3, 32, 32]).unwrap();
    let image = clip.encode_image(&img).unwrap();
    assert_eq!(image.size(), [1, 64]);
    let diff = (text.get(0) - text.get(1)).abs().max().double_value(&[]);
    assert!(diff > 1e-3 && diff.is_finite(), "{diff}");

    // Releasing the text tower frees every parameter outside `visual.*` but
    // the logit scale, leaves the image tower's output as it was, and makes
    // encode_text an error.
    let mut clip = clip;
    let numel = |clip: &Clip, visual: bool| -> usize {
        let vars = clip.var_store().unwrap().variables();
        vars.iter()
            .filter(|(k, _)| k.starts_with("visual.") == visual && *k != "logit_scale")
            .map(|(_, v)| v.numel())
            .sum()
    };
    let (text_before, visual_before) = (numel(&clip, false), numel(&clip, true));
    assert!(text_before > 0);
    clip.release_text_tower().unwrap();
    assert_eq!(numel(&clip, false), 0);
    assert_eq!(numel(&clip, true), visual_before);
    assert!(clip.encode_image(&img).unwrap().equal(&image));
    let e = clip.encode_text(&tokens).unwrap_err();
    assert!(e.message.contains("release_text_tower"), "{e}");

    // Folding QuickGELU into the ViT's weights keeps the embedding (to
    // float32 rounding) and is done once however often it is asked for.
    let c_fc = |clip: &Clip| {
        clip.var_store().unwrap().variables()["visual.transformer.resblocks.0.mlp.c_fc.weight"]
            .copy()
    };
    let before = c_fc(&clip);
    clip.fold_quick_gelu().unwrap();
    clip.fold_quick_gelu().unwrap();
    let ratio = (c_fc(&clip) / &before).nan_to_num(1.702, 1.702, 1.702);
    assert!((ratio - 1.702).abs().max().double_value(&[]) < 1e-5);
    let folded = clip.encode_image(&img).unwrap();
    let err = (&folded - &image).abs().max().double_value(&[]);
    let scale = image.abs().max().double_value(&[]);
    assert!(err < 1e-5 * scale, "{err} of {scale}");
}

#[test]
fn missing_tiny_models_name_the_generator() {
    let t = tempfile::tempdir().unwrap();
    let store = WeightsStore::new(t.path(), Manifest::builtin());
    let e = store.resolve(ModelKind::Clip, "tiny-clip").unwrap_err();
    assert!(e.message.contains("zoetrope weights tiny"), "{}", e.message);

    let out = std::process::Command::new(bin())
        .args(["weights", "fetch", "tiny-vqgan"])
        .env("ZOETROPE_WEIGHTS", t.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("generated locally: run `zoetrope weights tiny`"),
        "{err}"
    );
}

#[test]
fn cli_generates_lists_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .env("ZOETROPE_WEIGHTS", t.path())
            .output()
            .unwrap()
    };
    let listed = run(&["weights", "list", "--quick"]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    let line = text.lines().find(|l| l.contains("tiny-clip")).unwrap();
    assert!(
        line.contains("missing") && line.contains("zoetrope weights tiny"),
        "{line}"
    );

    let gen = run(&["weights", "tiny"]);
    assert!(gen.status.success(), "{gen:?}");
    assert!(t.path().join(TINY_CLIP_FILE).is_file());
    let again = run(&["weights", "tiny"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already present"));

    let listed = run(&["weights", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    for name in [TINY_CLIP, TINY_VQGAN] {
        let line = text.lines().find(|l| l.contains(name)).unwrap();
        assert!(
            line.contains("present")
                && line.contains("verified")
                && line.contains("untrained (generated)"),
            "{line}"
        );
    }
    let verified = run(&["weights", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    let text = String::from_utf8_lossy(&verified.stdout).to_string();
    assert!(text.contains("ok      tiny-clip") && text.contains("ok      tiny-vqgan"));
}

/// Random codes decode to varied colours, not flat grey. With
/// `ZOETROPE_TINY_PREVIEW=path.png` the decoded image is written for a look.
#[test]
fn decoded_codes_are_colourful() {
    let t = tempfile::tempdir().unwrap();
    let paths = write_tiny_models(t.path()).unwrap();
    let vq = Vqgan::load(&paths[1], Device::Cpu).unwrap();
    // A fixed pattern of codes (no RNG: other tests share libtorch's generator).
    let codes: Vec<i64> = (0..64i64).map(|i| (i * 37 + i / 8 * 11) % 256).collect();
    let codes = Tensor::from_slice(&codes).view([1, 8, 8]);
    let img = tch::no_grad(|| vq.decode(&vq.embed_codes(&codes).unwrap())).unwrap();
    assert_eq!(img.size(), [1, 3, 64, 64]);
    let rgb = ((img + 1.0) / 2.0).clamp(0.0, 1.0);
    if let Some(p) = std::env::var_os("ZOETROPE_TINY_PREVIEW") {
        let png = zoetrope::output::frames::tensor_to_rgb(&rgb, 4).unwrap();
        png.save(p).unwrap();
    }
    // Spatial spread within each channel, and channels that differ from each
    // other (grey would have equal channels).
    let spatial = rgb.std_dim(&[2i64, 3][..], true, false);
    let min_spread = spatial.min().double_value(&[]);
    assert!(min_spread > 0.05, "per-channel spread {spatial}");
    let chroma = (rgb.get(0).get(0) - rgb.get(0).get(2))
        .abs()
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(chroma > 0.05, "mean |R - B| {chroma}");
}

#[test]
fn manifest_checks_generated_entries() {
    let entry = |format: &str, extra: &str| {
        format!("[[model]]\nkind = \"clip\"\nname = \"t\"\nfile = \"clip/t.safetensors\"\nformat = \"{format}\"\n{extra}\n")
    };
    let ok = Manifest::parse(&entry("generated", ""), "m").unwrap();
    assert!(ok.models[0].is_generated());
    let e = Manifest::parse(&entry("generated", "url = \"http://x/t.pt\""), "m").unwrap_err();
    assert!(
        e.message.contains("generated model has no url"),
        "{}",
        e.message
    );
    let e = Manifest::parse(&entry("torchscript", ""), "m").unwrap_err();
    assert!(e.message.contains("url is missing"), "{}", e.message);
}

/// A checkpointed ViT forward gives the same embeddings, and after its
/// backward the same image gradient, as the plain forward.
#[test]
fn checkpointed_vit_gives_the_same_gradient() {
    let t = tempfile::tempdir().unwrap();
    write_tiny_models(t.path()).unwrap();
    let clip = Clip::load(&t.path().join(TINY_CLIP_FILE), Device::Cpu).unwrap();
    let mut rng = Rng::new(4).unwrap();
    let img = rng.rand(&[3, 3, 32, 32]).unwrap();
    let target = rng.randn(&[3, 64]).unwrap();

    let plain_in = img.detach().set_requires_grad(true);
    let plain = clip.encode_image(&plain_in).unwrap();
    (&plain * &target).sum(Kind::Float).backward();

    let ck_in = img.detach().set_requires_grad(true);
    let (ck, checkpoint) = clip.encode_image_checkpointed(&ck_in).unwrap();
    let checkpoint = checkpoint.expect("a ViT is checkpointed");
    (&ck * &target).sum(Kind::Float).backward();
    // The losses' pass stops at the blocks: nothing has reached the image yet.
    assert!(!ck_in.grad().defined());
    checkpoint.backward().unwrap();

    let rel = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
    };
    assert!(rel(&ck, &plain) < 1e-6, "{}", rel(&ck, &plain));
    let g = rel(&ck_in.grad(), &plain_in.grad());
    assert!(g < 1e-5, "{g}");
    assert!(plain_in.grad().abs().max().double_value(&[]) > 0.0);
}
