//! The manifest, model-name resolution, safetensors headers and shape checks.
//! No network, no Python.

use crate::support::weights_fixture as fixture;
use std::collections::BTreeMap;
use std::path::Path;
use zoetrope::models::weights::{
    basic_clip_check, basic_vqgan_check, detect_kind, normalize_name, official_keys, read_header,
    url_host, HeaderError, Manifest, ModelKind, SourceFormat, WeightsStore,
};
use zoetrope::ErrorKind;

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(fixture("tiny_clip_expected.safetensors"), path).unwrap();
}

#[test]
fn builtin_manifest_lists_the_official_models() {
    let mut m = Manifest::builtin();
    // The untrained models `zoetrope weights tiny` generates are listed too,
    // last, without a download.
    let generated: Vec<(ModelKind, String, String)> = m
        .models
        .iter()
        .filter(|e| e.is_generated())
        .map(|e| (e.kind, e.name.clone(), e.file.clone()))
        .collect();
    assert_eq!(
        generated,
        [
            (
                ModelKind::Clip,
                "tiny-clip".to_string(),
                "clip/tiny-clip.safetensors".to_string()
            ),
            (
                ModelKind::Vqgan,
                "tiny-vqgan".to_string(),
                "vqgan/tiny-vqgan.safetensors".to_string()
            )
        ]
    );
    for e in m.models.iter().filter(|e| e.is_generated()) {
        assert!(e.url.is_empty() && e.mirrors.is_empty() && e.source_sha256.is_none());
        assert_eq!(e.format, SourceFormat::Generated);
    }
    m.models.retain(|e| !e.is_generated());
    let clip: Vec<&str> = m
        .of_kind(ModelKind::Clip)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        clip,
        [
            "RN50",
            "RN101",
            "RN50x4",
            "RN50x16",
            "RN50x64",
            "ViT-B/32",
            "ViT-B/16",
            "ViT-L/14",
            "ViT-L/14@336px"
        ]
    );
    let vq: Vec<&str> = m
        .of_kind(ModelKind::Vqgan)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        vq,
        [
            "imagenet",
            "imagenet_1024",
            "coco",
            "wikiart",
            "sflckr",
            "openimages"
        ]
    );

    for e in m.of_kind(ModelKind::Clip) {
        // OpenAI's URL path carries the SHA-256 of the archive.
        let sha = e
            .source_sha256
            .as_deref()
            .expect("every OpenAI model has a checksum");
        assert!(
            e.url
                .starts_with("https://openaipublic.azureedge.net/clip/models/"),
            "{}",
            e.url
        );
        assert!(e.url.contains(&format!("/{sha}/")), "{} lacks {sha}", e.url);
        assert!(e.url.ends_with(".pt"));
        assert_eq!(e.format, SourceFormat::Torchscript);
        // File names stay portable: no '/' beyond the folder, no '@'.
        let base = e
            .file
            .strip_prefix("clip/")
            .expect("CLIP files live in clip/");
        assert!(!base.contains('/') && !base.contains('@'), "{}", e.file);
        assert!(e.url.ends_with(&format!("/{}.pt", e.slug())), "{}", e.url);
        assert!(!e.signature.is_empty(), "{} has no signature", e.name);
    }
    for e in m.of_kind(ModelKind::Vqgan) {
        assert_eq!(e.format, SourceFormat::Lightning);
        assert!(e.file.starts_with("vqgan/") && e.file.ends_with(".safetensors"));
    }
    assert_eq!(
        m.find(None, "imagenet").unwrap().file,
        "vqgan/vqgan_imagenet_f16_16384.safetensors"
    );
    assert_eq!(
        m.find(None, "openimages").unwrap().file,
        "vqgan/vqgan_gumbel_f8.safetensors"
    );
    assert_eq!(
        m.find(None, "ViT-L/14@336px").unwrap().file,
        "clip/ViT-L-14-336px.safetensors"
    );
}

/// PyTTI Portable's public mirror (pxl-pshr/pytti `app/model_mirror.py`)
/// backs up all nine CLIP archives and is the first source of the five
/// VQGANs it holds, with their sizes and SHA-256; wikiart's dead host is gone.
#[test]
fn builtin_manifest_has_the_pytti_mirror() {
    const HF: &str = "https://huggingface.co/pxlpshr/pytti-models/resolve/main/";
    let m = Manifest::builtin();
    for e in m.of_kind(ModelKind::Clip).filter(|e| !e.is_generated()) {
        let sha = e.source_sha256.as_deref().unwrap();
        assert_eq!(
            e.mirrors,
            [format!("{HF}clip/{sha}/{}.pt", e.slug())],
            "{}",
            e.name
        );
        assert!(e.size.is_some_and(|s| s > 200_000_000), "{}", e.name);
        assert_eq!(e.host(), Some("openaipublic.azureedge.net"));
    }
    let mirrored = [
        ("imagenet", "imagenet.ckpt", 980092370),
        ("coco", "coco_first_stage.ckpt", 296030214),
        ("wikiart", "wikiart.ckpt", 1005327541),
        ("sflckr", "sflckr.ckpt", 4263525412),
        ("openimages", "openimages.ckpt", 376581823),
    ];
    for (name, file, size) in mirrored {
        let e = m.find(Some(ModelKind::Vqgan), name).unwrap();
        assert_eq!(e.url, format!("{HF}vqgan/{file}"));
        assert_eq!(e.host(), Some("huggingface.co"));
        assert_eq!(e.size, Some(size), "{name}");
        assert!(e.source_sha256.is_some(), "{name}");
    }
    assert_eq!(m.find(None, "ViT-B/32").unwrap().size, Some(353976522));
    let i1024 = m.find(None, "imagenet_1024").unwrap();
    assert!(i1024.size.is_none() && i1024.source_sha256.is_none());
    for e in &m.models {
        for u in std::iter::once(&e.url).chain(&e.mirrors) {
            assert!(!u.contains("eaidata.bmk.sh"), "{}: {u}", e.name);
        }
    }
    let wikiart = m.find(None, "wikiart").unwrap();
    assert!(wikiart.mirrors.is_empty());
}

#[test]
fn url_hosts() {
    assert_eq!(
        url_host("https://huggingface.co/a/b.ckpt"),
        Some("huggingface.co")
    );
    assert_eq!(url_host("http://127.0.0.1:8080/x"), Some("127.0.0.1"));
    assert_eq!(url_host("http://u:p@host.org?x=1"), Some("host.org"));
    assert_eq!(url_host("http://[::1]:80/x"), Some("::1"));
    assert_eq!(url_host("ftp://host/x"), None);
    assert_eq!(url_host("https:///x"), None);
}

/// The CLIP URLs are exactly those of OpenAI's own loader (`clip/clip.py`
/// `_MODELS`), read from the project virtualenv when it has the package.
#[test]
fn clip_urls_match_openai_loader() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let Some(clip_py) = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/clip/clip.py"))
        .find(|p| p.is_file())
    else {
        eprintln!("skipped: no clip package under {}", lib.display());
        return;
    };
    let text = std::fs::read_to_string(clip_py).unwrap();
    let m = Manifest::builtin();
    let mut seen = 0;
    for line in text.lines() {
        let parts: Vec<&str> = line.split('"').collect();
        if parts.len() >= 4 && parts[3].starts_with("https://openaipublic") {
            let e = m.find(Some(ModelKind::Clip), parts[1]).expect(parts[1]);
            assert_eq!(e.name, parts[1]);
            assert_eq!(e.url, parts[3]);
            seen += 1;
        }
    }
    assert_eq!(seen, 9);
}

#[test]
fn names_are_matched_in_every_spelling() {
    let m = Manifest::builtin();
    let name = |s: &str| m.find(None, s).map(|e| e.name.clone());
    for s in [
        "ViT-B/32", "ViTB32", "ViT-B32", "vit-b-32", "ViT-B-32", "vitb32",
    ] {
        assert_eq!(name(s).as_deref(), Some("ViT-B/32"), "{s}");
    }
    assert_eq!(name("ViTL14_336px").as_deref(), Some("ViT-L/14@336px"));
    assert_eq!(name("ViTL14").as_deref(), Some("ViT-L/14"));
    assert_eq!(name("RN50x4").as_deref(), Some("RN50x4"));
    assert_eq!(name("RN50").as_deref(), Some("RN50"));
    assert_eq!(
        name("vqgan_imagenet_f16_16384").as_deref(),
        Some("imagenet")
    );
    assert_eq!(
        name("vqgan_imagenet_f16_1024").as_deref(),
        Some("imagenet_1024")
    );
    assert_eq!(name("imagenet_1024").as_deref(), Some("imagenet_1024"));
    assert_eq!(name("vqgan_gumbel_f8").as_deref(), Some("openimages"));
    assert_eq!(name("sflickr").as_deref(), Some("sflckr"));
    assert_eq!(name("ViT-B/33"), None);
    assert_eq!(name("--"), None);
    assert_eq!(normalize_name("ViT-L/14@336px"), "vitl14336px");
}

#[test]
fn resolve_finds_installed_files_and_explains_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = WeightsStore::new(dir.path(), Manifest::builtin());
    let want = dir.path().join("clip/ViT-B-32.safetensors");

    let err = store.resolve(ModelKind::Clip, "ViTB32").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Weights);
    assert_eq!(err.exit_code(), 3);
    for part in [
        "ViT-B/32",
        want.to_str().unwrap(),
        "zoetrope weights fetch ViT-B/32",
        "zoetrope weights import",
    ] {
        assert!(
            err.message.contains(part),
            "{part:?} not in {}",
            err.message
        );
    }

    touch(&want);
    for s in ["ViT-B/32", "ViTB32", "ViT-B32"] {
        assert_eq!(store.resolve(ModelKind::Clip, s).unwrap(), want);
    }
    // The other kind's names are refused with the right list.
    let err = store.resolve(ModelKind::Vqgan, "ViT-B/32").unwrap_err();
    assert!(err.message.contains("not a VQGAN model"), "{}", err.message);
    assert!(
        err.message.contains("imagenet, imagenet_1024"),
        "{}",
        err.message
    );

    // Unknown names get a suggestion.
    let err = store.resolve(ModelKind::Clip, "ViT-B/33").unwrap_err();
    assert!(
        err.message.contains("did you mean ViT-B/32?"),
        "{}",
        err.message
    );

    // A path to a safetensors file works; an unconverted checkpoint does not.
    let own = dir.path().join("elsewhere/mine.safetensors");
    touch(&own);
    assert_eq!(
        store
            .resolve(ModelKind::Clip, own.to_str().unwrap())
            .unwrap(),
        own
    );
    let pt = fixture("tiny_clip.pt");
    let err = store
        .resolve(ModelKind::Clip, pt.to_str().unwrap())
        .unwrap_err();
    assert!(
        err.message.contains("zoetrope weights import"),
        "{}",
        err.message
    );

    // A model imported under a name of the user's.
    touch(&dir.path().join("vqgan/my-vqgan.safetensors"));
    assert_eq!(
        store.resolve(ModelKind::Vqgan, "my-vqgan").unwrap(),
        dir.path().join("vqgan/my-vqgan.safetensors")
    );
}

#[test]
fn manifest_errors_name_the_problem() {
    let entry = |name: &str, file: &str, extra: &str| {
        format!("[[model]]\nkind = \"clip\"\nname = \"{name}\"\nfile = \"{file}\"\nformat = \"torchscript\"\nurl = \"http://x/y.pt\"\n{extra}\n")
    };
    let ok = Manifest::parse(&entry("A-1", "clip/a.safetensors", ""), "t").unwrap();
    assert_eq!(ok.models.len(), 1);

    let dup = entry("A-1", "clip/a.safetensors", "") + &entry("a1", "clip/b.safetensors", "");
    let e = Manifest::parse(&dup, "t").unwrap_err();
    assert!(e.message.contains("also names A-1"), "{}", e.message);

    let e = Manifest::parse(&entry("A", "vqgan/a.safetensors", ""), "t").unwrap_err();
    assert!(
        e.message.contains("clip/<name>.safetensors"),
        "{}",
        e.message
    );
    let e = Manifest::parse(&entry("A", "clip/../a.safetensors", ""), "t").unwrap_err();
    assert!(
        e.message.contains("clip/<name>.safetensors"),
        "{}",
        e.message
    );

    let e = Manifest::parse(
        &entry("A", "clip/a.safetensors", "source_sha256 = \"abc\""),
        "t",
    )
    .unwrap_err();
    assert!(e.message.contains("64 hex digits"), "{}", e.message);

    let e = Manifest::parse(&entry("A", "clip/a.safetensors", "size = 0"), "t").unwrap_err();
    assert!(e.message.contains("size is in bytes"), "{}", e.message);
    let e = Manifest::parse(
        &entry("A", "clip/a.safetensors", "mirrors = [\"ftp://x/y.pt\"]"),
        "t",
    )
    .unwrap_err();
    assert!(
        e.message.contains("\"ftp://x/y.pt\" is not an http(s) URL"),
        "{}",
        e.message
    );

    let e =
        Manifest::parse(&entry("A", "clip/a.safetensors", "colour = 1"), "mine.toml").unwrap_err();
    assert!(
        e.message.contains("mine.toml") && e.message.contains("colour"),
        "{}",
        e.message
    );
}

fn shapes_of(name: &str) -> BTreeMap<String, Vec<i64>> {
    read_header(&fixture(name)).unwrap().unwrap().shapes()
}

#[test]
fn clip_shape_check_describes_and_refuses() {
    let m = shapes_of("tiny_clip_expected.safetensors");
    assert_eq!(detect_kind(&m), Some(ModelKind::Clip));
    let d = basic_clip_check(&m).unwrap();
    assert_eq!(
        d,
        "CLIP: ViT image tower (width 64, 1 layers, patch 8, 16 px); text width 64, 1 layers, context 8, vocabulary 40; embedding 8"
    );

    for key in [
        "token_embedding.weight",
        "positional_embedding",
        "text_projection",
    ] {
        let mut broken = m.clone();
        broken.remove(key);
        let e = basic_clip_check(&broken).unwrap_err();
        assert!(e.message.contains(key), "{}", e.message);
    }
    let mut no_visual = m.clone();
    no_visual.retain(|k, _| !k.starts_with("visual."));
    assert!(basic_clip_check(&no_visual)
        .unwrap_err()
        .message
        .contains("visual"));
    let mut wide = m.clone();
    wide.insert("text_projection".into(), vec![32, 8]);
    assert!(basic_clip_check(&wide)
        .unwrap_err()
        .message
        .contains("widths disagree"));

    // A ModifiedResNet layout with RN50's signature shapes.
    let mut rn: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    rn.insert(
        "visual.attnpool.positional_embedding".into(),
        vec![50, 2048],
    );
    rn.insert("visual.attnpool.c_proj.weight".into(), vec![1024, 2048]);
    for (layer, blocks) in [(1, 3), (2, 4), (3, 6), (4, 3)] {
        for b in 0..blocks {
            rn.insert(
                format!("visual.layer{layer}.{b}.conv1.weight"),
                vec![64, 64, 1, 1],
            );
        }
    }
    rn.insert("token_embedding.weight".into(), vec![49408, 512]);
    rn.insert("positional_embedding".into(), vec![77, 512]);
    rn.insert("text_projection".into(), vec![512, 1024]);
    let d = basic_clip_check(&rn).unwrap();
    assert!(
        d.contains("ResNet image tower (blocks 3-4-6-3, 224 px)"),
        "{d}"
    );
    let manifest = Manifest::builtin();
    assert!(manifest
        .find(None, "RN50")
        .unwrap()
        .signature_mismatches(&rn)
        .is_empty());
    let other = manifest
        .find(None, "RN101")
        .unwrap()
        .signature_mismatches(&rn);
    assert_eq!(
        other,
        ["text_projection: expected [512, 512], found [512, 1024]"]
    );
}

#[test]
fn vqgan_shape_check_describes_and_refuses() {
    let m = shapes_of("tiny_vqgan_expected.safetensors");
    assert_eq!(detect_kind(&m), Some(ModelKind::Vqgan));
    assert_eq!(
        basic_vqgan_check(&m).unwrap(),
        "VQGAN: VQ codebook 16 × 4, f2, 2 levels"
    );

    let mut broken = m.clone();
    broken.remove("quant_conv.weight");
    assert!(basic_vqgan_check(&broken)
        .unwrap_err()
        .message
        .contains("quant_conv.weight"));
    let mut no_decoder = m.clone();
    no_decoder.retain(|k, _| !k.starts_with("decoder."));
    assert!(basic_vqgan_check(&no_decoder)
        .unwrap_err()
        .message
        .contains("decoder."));
    let mut narrow = m.clone();
    narrow.insert("quantize.embedding.weight".into(), vec![16, 8]);
    assert!(basic_vqgan_check(&narrow)
        .unwrap_err()
        .message
        .contains("codebook width 8"));

    // GumbelVQ keeps its codebook in quantize.embed and projects to logits.
    let mut gumbel = m.clone();
    gumbel.remove("quantize.embedding.weight");
    gumbel.insert("quantize.embed.weight".into(), vec![16, 4]);
    gumbel.insert("quantize.proj.weight".into(), vec![16, 4, 1, 1]);
    assert_eq!(
        basic_vqgan_check(&gumbel).unwrap(),
        "VQGAN: Gumbel codebook 16 × 4, f2, 2 levels"
    );
    gumbel.insert("quantize.proj.weight".into(), vec![15, 4, 1, 1]);
    assert!(basic_vqgan_check(&gumbel).is_err());

    let mut neither = m.clone();
    neither.retain(|k, _| !k.starts_with("encoder."));
    assert_eq!(detect_kind(&neither), None);
}

#[test]
fn headers_catch_truncated_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("tiny_clip_expected.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    match read_header(&cut).unwrap() {
        Err(HeaderError::Truncated { expected, actual }) => {
            assert_eq!(expected, bytes.len() as u64);
            assert_eq!(actual, bytes.len() as u64 - 100);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
    let pt = read_header(&fixture("tiny_clip.pt")).unwrap();
    assert!(matches!(pt, Err(HeaderError::NotSafetensors(_))), "{pt:?}");
}

#[test]
fn official_key_names() {
    let plain = [
        "encoder.conv_in.weight",
        "loss.discriminator.main.0.weight",
        "quantize.embedding.weight",
    ];
    let got = official_keys(plain);
    assert_eq!(got[0].1.as_deref(), Some("encoder.conv_in.weight"));
    assert_eq!(got[1].1, None);
    assert_eq!(got[2].1.as_deref(), Some("quantize.embedding.weight"));

    let nested = [
        "first_stage_model.encoder.conv_in.weight",
        "first_stage_model.loss.logvar",
        "transformer.tok_emb.weight",
        "cond_stage_model.encoder.conv_in.weight",
    ];
    let got: Vec<Option<String>> = official_keys(nested).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        got,
        [Some("encoder.conv_in.weight".to_string()), None, None, None]
    );

    let clip = [
        "visual.proj",
        "input_resolution",
        "context_length",
        "vocab_size",
        "logit_scale",
    ];
    let got: Vec<Option<String>> = official_keys(clip).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        got,
        [
            Some("visual.proj".to_string()),
            None,
            None,
            None,
            Some("logit_scale".to_string())
        ]
    );
}

/// The weights folder: $ZOETROPE_WEIGHTS, else ./weights when present, else the
/// checkout's weights/.
#[test]
fn weights_folder_choice() {
    let t = tempfile::tempdir().unwrap();
    let folder = |cwd: &Path, env: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zoetrope"));
        cmd.args(["weights", "list", "--quick"]).current_dir(cwd);
        cmd.env_remove("ZOETROPE_WEIGHTS")
            .env_remove("ZOETROPE_MANIFEST");
        if let Some(e) = env {
            cmd.env("ZOETROPE_WEIGHTS", e);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .next()
            .unwrap()
            .trim_start_matches("weights folder: ")
            .to_string()
    };
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    assert_eq!(folder(t.path(), None), checkout.display().to_string());
    std::fs::create_dir(t.path().join("weights")).unwrap();
    assert_eq!(folder(t.path(), None), "weights");
    let elsewhere = t.path().join("elsewhere");
    assert_eq!(
        folder(t.path(), Some(&elsewhere)),
        elsewhere.display().to_string()
    );
}

/// Key → shape of every official model, built with the official constructors
/// (scripts/reference/gen_weights_fixtures.py, on PyTorch's meta device).
fn official_shapes() -> BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<i64>>>> {
    let f = std::fs::File::open(fixture("official_shapes.json.gz")).unwrap();
    serde_json::from_reader(flate2::read::GzDecoder::new(f)).unwrap()
}

#[test]
fn official_layouts_pass_the_checks_and_are_told_apart() {
    let all = official_shapes();
    let m = Manifest::builtin();
    let expected_clip = [
        ("RN50", "ResNet image tower (blocks 3-4-6-3, 224 px); text width 512, 12 layers, context 77, vocabulary 49408; embedding 1024"),
        ("RN101", "ResNet image tower (blocks 3-4-23-3, 224 px); text width 512, 12 layers, context 77, vocabulary 49408; embedding 512"),
        ("RN50x4", "ResNet image tower (blocks 4-6-10-6, 288 px); text width 640, 12 layers, context 77, vocabulary 49408; embedding 640"),
        ("RN50x16", "ResNet image tower (blocks 6-8-18-8, 384 px); text width 768, 12 layers, context 77, vocabulary 49408; embedding 768"),
        ("RN50x64", "ResNet image tower (blocks 3-15-36-10, 448 px); text width 1024, 12 layers, context 77, vocabulary 49408; embedding 1024"),
        ("ViT-B/32", "ViT image tower (width 768, 12 layers, patch 32, 224 px); text width 512, 12 layers, context 77, vocabulary 49408; embedding 512"),
        ("ViT-B/16", "ViT image tower (width 768, 12 layers, patch 16, 224 px); text width 512, 12 layers, context 77, vocabulary 49408; embedding 512"),
        ("ViT-L/14", "ViT image tower (width 1024, 24 layers, patch 14, 224 px); text width 768, 12 layers, context 77, vocabulary 49408; embedding 768"),
        ("ViT-L/14@336px", "ViT image tower (width 1024, 24 layers, patch 14, 336 px); text width 768, 12 layers, context 77, vocabulary 49408; embedding 768"),
    ];
    assert_eq!(all["clip"].len(), expected_clip.len());
    for (name, desc) in expected_clip {
        let shapes = &all["clip"][name];
        assert_eq!(detect_kind(shapes), Some(ModelKind::Clip), "{name}");
        assert_eq!(
            basic_clip_check(shapes).unwrap(),
            format!("CLIP: {desc}"),
            "{name}"
        );
        // Exactly one manifest signature fits: the model's own.
        let fits: Vec<&str> = m
            .of_kind(ModelKind::Clip)
            .filter(|e| e.signature_mismatches(shapes).is_empty())
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(fits, [name], "{name}");
        assert_eq!(
            m.identify_by_shapes(ModelKind::Clip, shapes).unwrap().name,
            name
        );
    }
    for (name, desc) in [
        ("imagenet", "VQGAN: VQ codebook 16384 × 256, f16, 5 levels"),
        (
            "imagenet_1024",
            "VQGAN: VQ codebook 1024 × 256, f16, 5 levels",
        ),
        (
            "openimages",
            "VQGAN: Gumbel codebook 8192 × 256, f8, 4 levels",
        ),
    ] {
        let shapes = &all["vqgan"][name];
        assert_eq!(detect_kind(shapes), Some(ModelKind::Vqgan), "{name}");
        assert_eq!(basic_vqgan_check(shapes).unwrap(), desc, "{name}");
        let fits: Vec<&str> = m
            .of_kind(ModelKind::Vqgan)
            .filter(|e| !e.signature.is_empty() && e.signature_mismatches(shapes).is_empty())
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(fits, [name], "{name}");
        // wikiart, coco and sflckr have no signature: shapes alone never decide.
        assert!(m.identify_by_shapes(ModelKind::Vqgan, shapes).is_none());
    }
}
