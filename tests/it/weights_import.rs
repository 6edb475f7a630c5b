//! `weights import` on files in the official formats (tests/fixtures/weights,
//! made by scripts/reference/gen_weights_fixtures.py), and `weights verify`.
//!
//! The TorchScript and Lightning imports run the project virtualenv's PyTorch
//! (two calls, a few seconds each); everything else runs without Python.

use crate::support::weights_fixture as fixture;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use zoetrope::models::weights::{
    import_file, read_sidecar, sha256_file, sidecar_path, verify_model, ChecksumState,
    ImportOptions, Manifest, ModelKind, ShapeChecks, WeightsStore,
};
use zoetrope::{ErrorKind, Result};

fn store() -> (tempfile::TempDir, WeightsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = WeightsStore::new(dir.path().join("weights"), Manifest::builtin());
    (dir, store)
}

fn import(
    store: &WeightsStore,
    file: &Path,
    as_name: Option<&str>,
) -> Result<zoetrope::models::weights::ImportReport> {
    let opts = ImportOptions {
        as_name: as_name.map(str::to_string),
        ..Default::default()
    };
    import_file(store, file, &opts, &ShapeChecks::basic())
}

/// Asserts that two safetensors files hold the same tensors: names, dtypes,
/// shapes and bytes.
fn assert_same_tensors(got: &Path, want: &Path) {
    let (g, w) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    let (g, w) = (
        SafeTensors::deserialize(&g).unwrap(),
        SafeTensors::deserialize(&w).unwrap(),
    );
    let mut gn: Vec<&String> = g.names();
    let mut wn: Vec<&String> = w.names();
    gn.sort();
    wn.sort();
    assert_eq!(gn, wn);
    for n in wn {
        let (a, b) = (g.tensor(n).unwrap(), w.tensor(n).unwrap());
        assert_eq!(a.dtype(), b.dtype(), "{n}");
        assert_eq!(a.shape(), b.shape(), "{n}");
        assert_eq!(a.data(), b.data(), "{n}");
    }
}

/// No file of the weights folder is left but the expected ones.
fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_in(&p));
            } else {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn imports_an_openai_torchscript_archive() {
    let (_t, store) = store();
    let r = import(&store, &fixture("tiny_clip.pt"), Some("fixture-clip")).unwrap();
    assert_eq!(r.kind, ModelKind::Clip);
    assert_eq!(r.container, "torchscript");
    assert_eq!(r.path, store.dir.join("clip/fixture-clip.safetensors"));
    assert_eq!(
        r.dropped,
        ["context_length", "input_resolution", "vocab_size"]
    );
    assert_eq!(r.tensors, 38);
    assert!(
        r.description.starts_with("CLIP: ViT image tower (width 64"),
        "{}",
        r.description
    );
    assert_same_tensors(&r.path, &fixture("tiny_clip_expected.safetensors"));
    assert_eq!(read_sidecar(&r.path).as_deref(), Some(r.sha256.as_str()));
    assert_eq!(sha256_file(&r.path).unwrap(), r.sha256);
    // Nothing temporary is left behind.
    assert_eq!(
        files_in(&store.dir),
        [
            "fixture-clip.safetensors",
            "fixture-clip.safetensors.sha256"
        ]
    );
    assert_eq!(
        store.resolve(ModelKind::Clip, "fixture-clip").unwrap(),
        r.path
    );

    let v = verify_model(ModelKind::Clip, &r.path, None, &ShapeChecks::basic()).unwrap();
    assert!(v.ok(), "{:?}", v.problems());
}

#[test]
fn imports_a_lightning_checkpoint() {
    let (_t, store) = store();
    let r = import(&store, &fixture("tiny_vqgan.ckpt"), Some("tiny-vq")).unwrap();
    assert_eq!(r.kind, ModelKind::Vqgan);
    assert_eq!(r.container, "lightning");
    assert_eq!(
        r.dropped,
        [
            "cond_stage_model.embedding.weight",
            "first_stage_model.loss.discriminator.main.0.bias",
            "first_stage_model.loss.discriminator.main.0.weight",
            "first_stage_model.loss.perceptual_loss.lin0.model.1.weight",
            "transformer.tok_emb.weight",
        ]
    );
    assert_eq!(r.description, "VQGAN: VQ codebook 16 × 4, f2, 2 levels");
    assert_same_tensors(&r.path, &fixture("tiny_vqgan_expected.safetensors"));
    assert_eq!(
        files_in(&store.dir),
        ["tiny-vq.safetensors", "tiny-vq.safetensors.sha256"]
    );
}

#[test]
fn imports_safetensors_without_python_and_checks_claims() {
    let (_t, store) = store();
    // open_clip's safetensors use OpenAI's key names: imported as they are.
    let clip = fixture("tiny_clip_expected.safetensors");
    let r = import(&store, &clip, Some("mini")).unwrap();
    assert_eq!(
        (r.kind, r.container.as_str()),
        (ModelKind::Clip, "safetensors")
    );
    assert!(r.dropped.is_empty());
    assert_eq!(
        std::fs::read(&r.path).unwrap(),
        std::fs::read(&clip).unwrap()
    );

    // Claimed to be a real model whose shapes it lacks: refused, nothing written.
    let e = import(&store, &clip, Some("ViT-B/32")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(e.message.contains("is not ViT-B/32"), "{}", e.message);
    assert!(
        e.message
            .contains("visual.conv1.weight: expected [768, 3, 32, 32], found [64, 3, 8, 8]"),
        "{}",
        e.message
    );
    assert!(!store.dir.join("clip/ViT-B-32.safetensors").exists());

    // Claimed to be the wrong kind.
    let e = import(&store, &clip, Some("imagenet")).unwrap_err();
    assert!(
        e.message
            .contains("holds a CLIP model, but imagenet is a VQGAN model"),
        "{}",
        e.message
    );

    // No claim, a name that says nothing, shapes of no known model.
    let e = import(&store, &clip, None).unwrap_err();
    assert!(
        e.message.contains("cannot tell which CLIP model"),
        "{}",
        e.message
    );
    assert!(e.message.contains("--as"), "{}", e.message);

    // Recognised by file name.
    let named = store.dir.join("ViT-B-32.safetensors");
    std::fs::copy(&clip, &named).unwrap();
    let e = import(&store, &named, None).unwrap_err();
    assert!(e.message.contains("is not ViT-B/32"), "{}", e.message);

    // A taming-style state dict in safetensors: prefix stripped, loss dropped.
    let want = std::fs::read(fixture("tiny_vqgan_expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&want).unwrap();
    let mut views = Vec::new();
    for (n, t) in st.tensors() {
        views.push((format!("first_stage_model.{n}"), t));
    }
    let extra = vec![0u8; 16];
    views.push((
        "first_stage_model.loss.logvar".to_string(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &extra).unwrap(),
    ));
    let nested = store.dir.join("nested.safetensors");
    safetensors::serialize_to_file(views, &None::<HashMap<String, String>>, &nested).unwrap();
    let r = import(&store, &nested, Some("nested-vq")).unwrap();
    assert_eq!(r.dropped, ["first_stage_model.loss.logvar"]);
    assert_same_tensors(&r.path, &fixture("tiny_vqgan_expected.safetensors"));
}

#[test]
fn refuses_truncated_and_garbage_files_without_writing() {
    let (t, store) = store();
    let cut = |name: &str, keep: f64| {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = t.path().join(format!("cut-{name}"));
        std::fs::write(&path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
        path
    };
    for (file, says) in [
        (cut("tiny_clip.pt", 0.6), "truncated"),
        (cut("tiny_vqgan.ckpt", 0.9), "truncated"),
        (
            cut("tiny_clip_expected.safetensors", 0.5),
            "truncated safetensors",
        ),
    ] {
        let e = import(&store, &file, Some("x")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Weights);
        assert!(
            e.message.contains(says),
            "{}: {}",
            file.display(),
            e.message
        );
        assert!(
            e.message.contains(&file.display().to_string()),
            "{}",
            e.message
        );
    }
    // Complete but damaged inside: caught by the archive's CRCs (PyTorch
    // alone would read the zeroed bytes as weights).
    let mut bytes = std::fs::read(fixture("tiny_vqgan.ckpt")).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid..mid + 2000].fill(0);
    let damaged = t.path().join("damaged.ckpt");
    std::fs::write(&damaged, &bytes).unwrap();
    let e = import(&store, &damaged, Some("x")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(
        e.message.contains("damaged") && e.message.contains("CRC"),
        "{}",
        e.message
    );

    let garbage = t.path().join("garbage.pt");
    std::fs::write(&garbage, b"<html>404 Not Found</html>\n".repeat(100)).unwrap();
    let e = import(&store, &garbage, None).unwrap_err();
    assert!(e.message.contains("not a weights file"), "{}", e.message);
    let e = import(&store, &t.path().join("absent.pt"), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(
        files_in(&store.dir).is_empty(),
        "{:?}",
        files_in(&store.dir)
    );
}

#[test]
fn verify_catches_changed_files_and_missing_records() {
    let (_t, store) = store();
    let r = import(
        &store,
        &fixture("tiny_vqgan_expected.safetensors"),
        Some("vq"),
    )
    .unwrap();
    let checks = ShapeChecks::basic();
    assert!(verify_model(ModelKind::Vqgan, &r.path, None, &checks)
        .unwrap()
        .ok());

    // One flipped byte in the tensor data.
    let mut bytes = std::fs::read(&r.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&r.path, &bytes).unwrap();
    let v = verify_model(ModelKind::Vqgan, &r.path, None, &checks).unwrap();
    assert!(!v.ok());
    assert!(
        matches!(&v.checksum, ChecksumState::Mismatch { recorded, .. } if *recorded == r.sha256)
    );
    assert!(
        v.problems()[0].contains("checksum mismatch"),
        "{:?}",
        v.problems()
    );
    assert!(v.shapes.is_ok());

    // Checked as the wrong kind: the shape check fails.
    let v = verify_model(ModelKind::Clip, &r.path, None, &checks).unwrap();
    assert!(
        v.shapes.as_ref().unwrap_err().contains("visual"),
        "{:?}",
        v.shapes
    );

    std::fs::remove_file(sidecar_path(&r.path)).unwrap();
    let v = verify_model(ModelKind::Vqgan, &r.path, None, &checks).unwrap();
    assert_eq!(v.checksum, ChecksumState::NotRecorded);
    assert!(
        v.problems()[0].contains("no recorded checksum"),
        "{:?}",
        v.problems()
    );
}

#[test]
fn cli_reports_missing_models_and_imports() {
    let t = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_zoetrope");
    let run = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .env("ZOETROPE_WEIGHTS", t.path())
            .env_remove("ZOETROPE_MANIFEST")
            .output()
            .unwrap()
    };
    let out = run(&["weights", "verify", "ViTB32"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CLIP model ViT-B/32 is not installed"),
        "{err}"
    );
    assert!(err.contains("zoetrope weights fetch ViT-B/32"), "{err}");

    let clip = fixture("tiny_clip_expected.safetensors");
    let out = run(&["weights", "import", clip.to_str().unwrap(), "--as", "mini"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mini (CLIP) imported"), "{text}");

    let out = run(&["weights", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ok      mini: CLIP: ViT"),
        "{text}"
    );

    let out = run(&["weights", "list", "--quick"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mini (own)") && text.contains("recorded"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("ViT-B/32") && l.contains("missing")),
        "{text}"
    );

    // Damage the file: verify fails with the weights exit code.
    let f = t.path().join("clip/mini.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    let out = run(&["weights", "verify", "mini"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checksum mismatch"));
}
