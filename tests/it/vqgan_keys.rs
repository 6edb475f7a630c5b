//! Full-size key/shape agreement for the six named VQGANs.
//!
//! `tests/fixtures/keys/vqgan_<name>.txt` lists the state-dict keys and shapes
//! of the official taming modules built with each model's official
//! hyper-parameters (made by `scripts/reference/gen_vqgan_fixtures.py` on
//! torch's meta device). Our shape description must equal it exactly, and
//! inferring a config from those shapes must give back the named config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use zoetrope::models::vqgan::{VqganConfig, VQGAN_MODEL_NAMES};

fn official_keys(name: &str) -> BTreeMap<String, Vec<i64>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(format!("vqgan_{name}.txt"));
    let text = std::fs::read_to_string(&path).expect("key list fixture");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, s) = l.split_once(' ').expect("`key shape` line");
            let shape = s
                .split(',')
                .map(|d| d.parse().expect("dimension"))
                .collect();
            (k.to_string(), shape)
        })
        .collect()
}

#[test]
fn expected_shapes_equal_official_state_dicts() {
    for name in VQGAN_MODEL_NAMES {
        let official = official_keys(name);
        let ours = VqganConfig::named(name).unwrap().expected_shapes();
        let missing: Vec<_> = official.keys().filter(|k| !ours.contains_key(*k)).collect();
        let extra: Vec<_> = ours.keys().filter(|k| !official.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{name}: we lack {missing:?}");
        assert!(extra.is_empty(), "{name}: we add {extra:?}");
        for (k, s) in &official {
            assert_eq!(&ours[k], s, "{name}: shape of {k}");
        }
        assert!(official.len() > 300, "{name}: suspiciously few keys");
    }
}

#[test]
fn infer_reproduces_named_configs() {
    for name in VQGAN_MODEL_NAMES {
        let named = VqganConfig::named(name).unwrap();
        let inferred = VqganConfig::infer(&official_keys(name)).unwrap();
        assert_eq!(inferred, named, "{name}");
    }
    assert_eq!(VqganConfig::named("imagenet").unwrap().factor(), 16);
    assert_eq!(VqganConfig::named("openimages").unwrap().factor(), 8);
    assert_eq!(VqganConfig::named("imagenet").unwrap().n_embed, 16384);
    assert_eq!(VqganConfig::named("openimages").unwrap().n_embed, 8192);
    assert!(VqganConfig::named("openimages").unwrap().is_gumbel());
}

#[test]
fn infer_rejects_foreign_state_dicts() {
    let mut m = official_keys("imagenet");
    m.remove("encoder.conv_in.weight");
    let e = VqganConfig::infer(&m).unwrap_err();
    assert!(
        e.message.contains("encoder.conv_in.weight"),
        "{}",
        e.message
    );

    let mut m = official_keys("imagenet");
    m.insert("encoder.conv_out.weight".into(), vec![512, 512, 3, 3]);
    let e = VqganConfig::infer(&m).unwrap_err();
    assert!(e.message.contains("double_z"), "{}", e.message);
}
