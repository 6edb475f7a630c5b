//! `weights verify`'s full shape check against the official layouts of all 15
//! models (the key lists the reference generators wrote from the official code).

use std::collections::BTreeMap;
use std::path::Path;
use zoetrope::models::weights::{full_clip_check, full_vqgan_check};

fn read_keys(name: &str) -> BTreeMap<String, Vec<i64>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (key, shape) = l.rsplit_once(' ').unwrap();
            let dims = if shape == "scalar" {
                vec![]
            } else {
                shape
                    .split(['x', ','])
                    .map(|d| d.parse::<i64>().unwrap())
                    .collect()
            };
            (key.to_string(), dims)
        })
        .collect()
}

fn key_files(prefix: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn all_official_layouts_pass_the_full_check() {
    let clips = key_files("clip_");
    assert_eq!(clips.len(), 9);
    for f in &clips {
        let m = read_keys(f);
        full_clip_check(&m).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let vqgans = key_files("vqgan_");
    assert_eq!(vqgans.len(), 6);
    for f in &vqgans {
        let m = read_keys(f);
        full_vqgan_check(&m).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn a_wrong_shape_or_missing_tensor_is_named() {
    let mut m = read_keys("clip_ViT-B-32.txt");
    m.insert(
        "visual.transformer.resblocks.3.mlp.c_fc.weight".into(),
        vec![3072, 700],
    );
    let e = full_clip_check(&m).unwrap_err();
    assert!(e.message.contains("resblocks.3.mlp.c_fc.weight"), "{e}");
    assert_eq!(e.exit_code(), 3);

    let mut m = read_keys("vqgan_imagenet.txt");
    m.remove("decoder.mid.attn_1.proj_out.bias");
    let e = full_vqgan_check(&m).unwrap_err();
    assert!(
        e.message.contains("decoder.mid.attn_1.proj_out.bias"),
        "{e}"
    );

    let mut m = read_keys("vqgan_openimages.txt");
    m.insert("decoder.extra.weight".into(), vec![3]);
    let e = full_vqgan_check(&m).unwrap_err();
    assert!(e.message.contains("not part of the model"), "{e}");
}
