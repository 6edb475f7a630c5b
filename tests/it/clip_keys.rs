//! The nine released CLIP architectures: the keys and shapes zoetrope registers
//! equal those of the official `clip.model.CLIP` (lists written by
//! `scripts/reference/gen_clip_fixtures.py` on the meta device), and
//! `ClipConfig::infer` recovers each named configuration from its key list.

use std::collections::BTreeMap;

use zoetrope::models::clip::{ClipConfig, MODEL_NAMES};

fn official_shapes(name: &str) -> BTreeMap<String, Vec<i64>> {
    let file = format!(
        "{}/tests/fixtures/keys/clip_{}.txt",
        env!("CARGO_MANIFEST_DIR"),
        name.replace(['/', '@'], "-")
    );
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (key, shape) = l.split_once(' ').expect("'key shape' lines");
            let shape = if shape == "scalar" {
                vec![]
            } else {
                shape.split('x').map(|d| d.parse().unwrap()).collect()
            };
            (key.to_string(), shape)
        })
        .collect()
}

#[test]
fn all_nine_models_have_the_official_keys_and_shapes() {
    assert_eq!(MODEL_NAMES.len(), 9);
    for name in MODEL_NAMES {
        let official = official_shapes(name);
        let ours = ClipConfig::by_name(name)
            .unwrap()
            .state_dict_shapes()
            .unwrap();
        let only_official: Vec<_> = official.keys().filter(|k| !ours.contains_key(*k)).collect();
        let only_ours: Vec<_> = ours.keys().filter(|k| !official.contains_key(*k)).collect();
        assert!(
            only_official.is_empty() && only_ours.is_empty(),
            "{name}: missing {only_official:?}, extra {only_ours:?}"
        );
        for (k, shape) in &official {
            assert_eq!(&ours[k], shape, "{name}: shape of {k}");
        }
    }
}

#[test]
fn infer_recovers_every_named_config() {
    for name in MODEL_NAMES {
        let inferred = ClipConfig::infer(&official_shapes(name)).unwrap();
        assert_eq!(inferred, ClipConfig::by_name(name).unwrap(), "{name}");
    }
}

#[test]
fn parameter_counts_match_the_released_models() {
    // Approximate published sizes (parameters, excluding BN counters), as a
    // sanity check independent of the key lists.
    let count = |name: &str| -> i64 {
        ClipConfig::by_name(name)
            .unwrap()
            .state_dict_shapes()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked") && !k.contains("running_"))
            .map(|(_, s)| s.iter().product::<i64>())
            .sum()
    };
    let b32 = count("ViT-B/32");
    assert!(
        (151_000_000..152_000_000).contains(&b32),
        "ViT-B/32 has {b32}"
    );
    let l14 = count("ViT-L/14");
    assert!(
        (427_000_000..429_000_000).contains(&l14),
        "ViT-L/14 has {l14}"
    );
}

#[test]
fn unknown_names_and_broken_shapes_are_clear_errors() {
    let e = ClipConfig::by_name("ViT-H/14").unwrap_err();
    assert!(
        e.message.contains("ViT-H/14") && e.message.contains("ViT-B/32"),
        "{e}"
    );
    let mut shapes = official_shapes("RN50");
    shapes.remove("ln_final.weight");
    let e = ClipConfig::infer(&shapes).unwrap_err();
    assert!(e.message.contains("ln_final.weight"), "{e}");
}
