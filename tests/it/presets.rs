//! pytti YAML presets through the binary (SPEC §11, docs/scene-format.md
//! "pytti presets"): full and `# @package _global_` presets planned with
//! pytti's defaults, `convert` to TOML planning the same, the seed study's
//! settings as a preset (plan, render with the tiny models, kill and resume,
//! grid), and the refusals, each naming the key and the line.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zoetrope::scene::preset::yaml::{parse, resolve_plain, Kind};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/presets")
        .join(name)
}

fn zoetrope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoetrope"))
        .args(args)
        .output()
        .expect("run zoetrope")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn plan_json(scene: &Path) -> Value {
    let o = zoetrope(&["plan", scene.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "plan failed: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

/// Converts `preset` into `dir`, returning the TOML's path and text.
fn convert(preset: &Path, dir: &Path) -> (PathBuf, String) {
    let out = dir.join(format!(
        "{}.toml",
        preset.file_stem().unwrap().to_string_lossy()
    ));
    let o = zoetrope(&[
        "convert",
        preset.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "convert failed: {}", text(&o.stderr));
    let t = std::fs::read_to_string(&out).unwrap();
    (out, t)
}

/// The plan without what names the file (`scene`) or warns about it.
fn comparable(mut doc: Value) -> Value {
    let m = doc.as_object_mut().unwrap();
    m.remove("scene");
    m.remove("warnings");
    doc
}

fn warnings(doc: &Value) -> Vec<String> {
    doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn full_preset_covers_every_pytti_key_and_takes_its_values() {
    let preset = fixture("full.yaml");
    let yaml = std::fs::read_to_string(&preset).unwrap();
    // The fixture sets every key of pytti-core's default.yaml.
    for line in zoetrope::scene::preset::pytti::DEFAULTS.lines() {
        let Some((key, _)) = line.split_once(':') else {
            continue;
        };
        if key != "mmc_models" {
            assert!(yaml.contains(&format!("\n{key}:")), "full.yaml lacks {key}");
        }
    }
    let doc = plan_json(&preset);
    assert_eq!(doc["frames"], 6);
    assert_eq!(doc["transition"], "pytti");
    assert_eq!(doc["seed"], 2024);
    assert_eq!(doc["fps"], 8.0);
    assert_eq!(doc["pre_animation_steps"], 10);
    assert_eq!(doc["animation_mode"], "2D");
    // One note for the display and cache keys, naming them; nothing else
    // (the pending settings are at pytti's defaults).
    let w = warnings(&doc);
    assert_eq!(w.len(), 1, "{w:?}");
    for key in ["display_every", "backups", "models_parent_dir", "device"] {
        assert!(w[0].contains(key), "{w:?}");
    }
    let t = tempfile::tempdir().unwrap();
    let (_, toml) = convert(&preset, t.path());
    for line in [
        "border_mode = \"clamp\"",
        "transition = \"pytti\"",
        "perceptors = [\"RN50\", \"ViT-B/32\", \"ViT-B/16\"]",
        "smoothing_weight = \"0.1\"",
        "device = \"auto\"",
        "file_namespace = \"lighthouse\"",
        "sampling_mode = \"bilinear\"",
        "infill_mode = \"mirror\"",
        "learning_rate = 0.1",
        "cut_pow = 1.5",
        "scene_prefix = \"oil painting of \"",
        "zoom_x_2d = \"0:(0), 2:(4)\"",
    ] {
        assert!(
            toml.contains(&format!("\n{line}\n")),
            "{line} missing:\n{toml}"
        );
    }
}

#[test]
fn override_preset_merges_over_pytti_defaults() {
    let doc = plan_json(&fixture("override.yaml"));
    // pytti's defaults for what the override leaves out: 12 fps, and the
    // pytti transition; its own values and `${steps_per_frame}`.
    assert_eq!(doc["fps"], 12.0);
    assert_eq!(doc["transition"], "pytti");
    assert_eq!(doc["save_every"], 3);
    assert_eq!(doc["pre_animation_steps"], 2);
    assert_eq!(doc["frames"], 10);
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64()),
        (Some(192), Some(112))
    );
    let w = warnings(&doc).join("\n");
    assert!(w.contains("display_every") && w.contains("rounded"), "{w}");
    let t = tempfile::tempdir().unwrap();
    let (_, toml) = convert(&fixture("override.yaml"), t.path());
    // +use_mmc with mmc_models picks those OpenAI CLIP models.
    assert!(
        toml.contains("\nperceptors = [\"RN50\", \"ViT-B/16\"]\n"),
        "{toml}"
    );
    for line in [
        "cutouts = 40",
        "border_mode = \"clamp\"",
        "smoothing_weight = \"0.02\"",
        "vqgan_model = \"coco\"",
        "file_namespace = \"default\"",
        "reencode_each_frame = true",
    ] {
        assert!(
            toml.contains(&format!("\n{line}\n")),
            "{line} missing:\n{toml}"
        );
    }
}

#[test]
fn minus_one_takes_a_side_from_the_init_images_aspect_ratio() {
    let t = tempfile::tempdir().unwrap();
    image::RgbImage::new(300, 200)
        .save(t.path().join("init.png"))
        .unwrap();
    let preset = t.path().join("aspect.yaml");
    let write = |body: &str| {
        std::fs::write(&preset, format!("# @package _global_\n{body}")).unwrap();
    };
    // pytti: width = int(height · 300 / 200); height = int(width · 200 / 300).
    write("init_image: init.png\nwidth: -1\nheight: 64\n");
    let doc = plan_json(&preset);
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64()),
        (Some(96), Some(64))
    );
    let w = warnings(&doc).join("\n");
    assert!(
        w.contains("width: -1 is 96 pixels") && w.contains("300×200"),
        "{w}"
    );
    write("init_image: init.png\nwidth: 100\nheight: -1\n");
    let doc = plan_json(&preset);
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64()),
        (Some(100), Some(66))
    );
    let (_, toml) = convert(&preset, t.path());
    assert!(toml.contains("\nheight = 66\n"), "{toml}");
    // Without a readable init image, or with both sides -1: refused by key.
    for (body, wanted) in [
        ("init_image: missing.png\nwidth: -1\n", "missing.png"),
        (
            "init_image: init.png\nwidth: -1\nheight: -1\n",
            "`height` is not a size",
        ),
    ] {
        write(body);
        let o = zoetrope(&["plan", preset.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("aspect.yaml:") && err.contains(wanted),
            "{err}"
        );
    }
}

#[test]
fn converted_toml_plans_exactly_as_the_preset() {
    let t = tempfile::tempdir().unwrap();
    for name in ["full.yaml", "override.yaml", "seed_study.yaml"] {
        let preset = fixture(name);
        let (toml_path, _) = convert(&preset, t.path());
        assert_eq!(
            comparable(plan_json(&preset)),
            comparable(plan_json(&toml_path)),
            "{name}"
        );
        // An existing file is not replaced without --force.
        let o = zoetrope(&[
            "convert",
            preset.to_str().unwrap(),
            "-o",
            toml_path.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
        let o = zoetrope(&[
            "convert",
            preset.to_str().unwrap(),
            "-o",
            toml_path.to_str().unwrap(),
            "--force",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

#[test]
fn seed_study_preset_plans_pyttis_transition() {
    // SPEC §3's acceptance example in pytti mode, the default for presets.
    let doc = plan_json(&fixture("seed_study.yaml"));
    assert_eq!(doc["frames"], 40);
    assert_eq!(doc["transition"], "pytti");
    assert_eq!(doc["seed"], 12345);
    let weights = |k: usize| {
        let w = doc["timeline"][k - 1]["scene_weights"]
            .as_array()
            .unwrap()
            .clone();
        (w[0].as_f64().unwrap(), w[1].as_f64().unwrap())
    };
    for k in 1..=20 {
        assert_eq!(weights(k), (1.0, 0.0), "frame {k}");
    }
    for k in 21..=25 {
        let (a, b) = weights(k);
        assert!(b > 0.0 && a > b, "frame {k}: {a} {b}");
    }
    for k in 26..=30 {
        let (a, b) = weights(k);
        assert!(a > 0.0 && b > a, "frame {k}: {a} {b}");
    }
    for k in 31..=40 {
        assert_eq!(weights(k), (0.0, 1.0), "frame {k}");
    }
    let t = tempfile::tempdir().unwrap();
    let (_, toml) = convert(&fixture("seed_study.yaml"), t.path());
    assert!(toml.contains("\nperceptors = [\"ViT-B/32\"]\n"), "{toml}");
}

/// `plan` on a preset written into `dir`, which must fail with exit 2 and a
/// message holding every one of `wanted`.
fn refused(dir: &Path, name: &str, yaml: &str, wanted: &[&str]) {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    let o = zoetrope(&["plan", p.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    for w in wanted {
        assert!(err.contains(w), "{name}: `{w}` not in: {err}");
    }
}

#[test]
fn presets_zoetrope_cannot_render_are_refused_by_key_and_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = "# @package _global_\nscenes: a forest\nimage_model: VQGAN\n";
    let case = |name: &str, extra: &str, wanted: &[&str]| {
        refused(d, name, &format!("{base}{extra}"), wanted)
    };
    case(
        "three_d.yaml",
        "animation_mode: 3D\n",
        &["three_d.yaml:4:17", "`animation_mode`", "3D"],
    );
    case(
        "video.yaml",
        "animation_mode: Video Source\nvideo_path: clip.mp4\n",
        &["video.yaml:4:17", "Video Source"],
    );
    case(
        "z3d.yaml",
        "animation_mode: 2D\ntranslate_z_3d: '10*t'\n",
        &["z3d.yaml:5:17", "`translate_z_3d`", "3D mode"],
    );
    case(
        "path.yaml",
        "video_path: clip.mp4\n",
        &["path.yaml:4:13", "`video_path`", "Video Source"],
    );
    case(
        "edge.yaml",
        "edge_stabilization_weight: 1\n",
        &["`edge_stabilization_weight`"],
    );
    case(
        "foo.yaml",
        "seed: ${foo}\n",
        &["foo.yaml:4:7", "`${foo}`", "names no setting"],
    );
    case(
        "now.yaml",
        "file_namespace: run_${now:%H}\n",
        &["`file_namespace`", "resolver `now`"],
    );
    case(
        "hydra.yaml",
        "hydra:\n  run:\n    dir: out\n",
        &["hydra.yaml:4:1", "`hydra`"],
    );
    case(
        "defaults.yaml",
        "defaults:\n  - _self_\n  - conf: my_preset\n",
        &[
            "defaults.yaml:6:5",
            "conf: my_preset",
            "another config file",
        ],
    );
    case(
        "typo.yaml",
        "widht: 300\n",
        &["typo.yaml:4:1", "`widht`", "did you mean `width`"],
    );
    case(
        "type.yaml",
        "width: wide\n",
        &["type.yaml:4:8", "setting `width`"],
    );
    case(
        "aspect.yaml",
        "height: -1\n",
        &["aspect.yaml:4:9", "setting `height`", "aspect ratio"],
    );
    case(
        "twice.yaml",
        "width: 256\nwidth: 128\n",
        &["twice.yaml:5:1", "`width` is given twice"],
    );
    case(
        "expr.yaml",
        "animation_mode: 2D\ntranslate_x: '1 + sin(t'\n",
        &["expr.yaml:5:", "setting `translate_x`", "does not parse"],
    );
    case(
        "noclip.yaml",
        "ViTB32: false\n",
        &["`ViTB32`", "at least one perceptor"],
    );
    case(
        "mmc.yaml",
        "+use_mmc: true\nmmc_models:\n  - {architecture: clip, publisher: mlfoundations, id: ViT-B-32}\n",
        &["mmc.yaml:6:5", "`mmc_models`", "OpenAI"],
    );
    // A YAML syntax error keeps its line and column.
    refused(
        d,
        "syntax.yaml",
        "scenes: a forest\nwidth: [256, 128\nheight: 64\n",
        &["syntax.yaml:3:", "not valid YAML"],
    );
}

#[test]
fn hydra_interpolations_of_pyttis_defaults_are_understood() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("now.yaml");
    std::fs::write(
        &p,
        "# @package _global_\nscenes: a forest\nimage_model: VQGAN\nseed: ${now:%f}\n\
         models_parent_dir: ${user_cache:}\nsave_every: ${steps_per_frame}\nsteps_per_frame: 25\n",
    )
    .unwrap();
    let a = plan_json(&p);
    let b = plan_json(&p);
    assert_eq!(a["save_every"], 25);
    // A new seed each run, as pytti's microsecond seed.
    assert_ne!(a["seed"], b["seed"]);
    let (toml_path, toml) = convert(&p, t.path());
    assert!(!toml.contains("\nseed ="), "{toml}");
    assert!(toml.contains("${now:%f}"), "{toml}");
    assert!(plan_json(&toml_path)["seed"].is_u64());
}

/// The seed study's preset scaled down for the tiny models: its prompts,
/// motion, cut_pow, seed and `+use_mmc` as written, a shorter timeline and
/// a smaller image; zoetrope's `perceptors` names the tiny CLIP (a preset
/// setting it keeps it over pytti's flags and mmc_models).
#[cfg(feature = "video")]
fn tiny_seed_study(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("seed_study.yaml"))
        .unwrap()
        .replace(
            "vqgan_model: sflckr",
            "vqgan_model: tiny-vqgan\nperceptors: [tiny-clip]",
        )
        .replace("height: 128", "height: 32")
        .replace("width: 256", "width: 64")
        .replace("steps_per_frame: 50", "steps_per_frame: 4")
        .replace("save_every: 50", "save_every: 4")
        .replace("steps_per_scene: 1000", "steps_per_scene: 12")
        .replace("interpolation_steps: 500", "interpolation_steps: 6")
        .replace("cutouts: 60", "cutouts: 6");
    let p = dir.join("study.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[cfg(feature = "video")]
fn tiny(args: &[&str], weights: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
    c.args(args)
        .env("ZOETROPE_WEIGHTS", weights)
        .env("OMP_NUM_THREADS", "1");
    c
}

#[cfg(feature = "video")]
fn frames(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|k| std::fs::read(dir.join(format!("frame_{k:05}.png"))).unwrap())
        .collect()
}

#[test]
#[cfg(feature = "video")]
fn seed_study_preset_renders_resumes_and_grids_with_the_tiny_models() {
    use crate::support::{has_frame, kill_when};
    let t = tempfile::tempdir().unwrap();
    let weights = t.path().join("weights");
    zoetrope::models::tiny::write_tiny_models(&weights).unwrap();
    let preset = tiny_seed_study(t.path());
    let p = preset.to_str().unwrap();
    let whole = t.path().join("whole");
    let o = tiny(
        &["render", p, "--out", whole.to_str().unwrap(), "-q"],
        &weights,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    // pytti's default file_namespace, and the preset's settings recorded.
    let dir = whole.join("default");
    let reference = frames(&dir, 6);
    let settings = std::fs::read_to_string(dir.join("settings.toml")).unwrap();
    for line in [
        "transition = \"pytti\"",
        "border_mode = \"clamp\"",
        "seed = 12345",
    ] {
        assert!(settings.contains(line), "{line}: {settings}");
    }
    let mp4 = zoetrope::output::video::read_mp4(&dir.join("default.mp4")).unwrap();
    assert_eq!(mp4.frames.len(), 6);

    // Killed after frame 2, resumed from the recorded settings: the same frames.
    let broken = t.path().join("broken");
    let child = tiny(
        &["render", p, "--out", broken.to_str().unwrap(), "-q"],
        &weights,
    )
    .spawn()
    .unwrap();
    let bdir = broken.join("default");
    kill_when(child, "frame 2", || has_frame(&bdir, 2));
    let o = tiny(
        &["render", "--resume", bdir.to_str().unwrap(), "-q"],
        &weights,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(frames(&bdir, 6), reference);

    // The grid takes the preset too: one cell, the tiny models by file.
    let grid = t.path().join("grid");
    let vq = weights.join("vqgan/tiny-vqgan.safetensors");
    let clip = weights.join("clip/tiny-clip.safetensors");
    let o = tiny(
        &[
            "grid",
            p,
            "--vqgan",
            vq.to_str().unwrap(),
            "--perceptors",
            clip.to_str().unwrap(),
            "--out",
            grid.to_str().unwrap(),
        ],
        &weights,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cell = std::fs::read_dir(&grid)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().join("frame_00006.png").exists());
    assert!(cell.is_some(), "no rendered cell in {}", grid.display());
}

#[test]
fn yaml_plain_scalars_are_typed_as_pyyaml_with_omegaconf_floats() {
    let k = |t: &str| resolve_plain(t).unwrap();
    for t in ["yes", "On", "TRUE", "true"] {
        assert_eq!(k(t), Kind::Bool(true), "{t}");
    }
    for t in ["no", "off", "OFF", "False"] {
        assert_eq!(k(t), Kind::Bool(false), "{t}");
    }
    for t in ["", "~", "null", "NULL"] {
        assert_eq!(k(t), Kind::Null, "{t}");
    }
    assert_eq!(k("12345"), Kind::Int(12345));
    assert_eq!(k("-4854551145582748953"), Kind::Int(-4854551145582748953));
    assert_eq!(k("012"), Kind::Int(10)); // YAML 1.1 octal
    assert_eq!(k("0x1F"), Kind::Int(31));
    assert_eq!(k("0b101"), Kind::Int(5));
    assert_eq!(k("1_000"), Kind::Int(1000));
    assert_eq!(k("1:30"), Kind::Int(90)); // base 60
    assert_eq!(k("1e-3"), Kind::Float(1e-3)); // OmegaConf's rule
    assert_eq!(k("-0.5"), Kind::Float(-0.5));
    // PyYAML reads a signed number without a digit before the point as text.
    assert_eq!(k("-.5"), Kind::Str("-.5".into()));
    assert_eq!(k("2."), Kind::Float(2.0));
    assert_eq!(k("-.inf"), Kind::Float(f64::NEG_INFINITY));
    assert!(matches!(k(".nan"), Kind::Float(x) if x.is_nan()));
    for t in [
        "2D",
        "09",
        "0:(0), 24:(3)",
        "sin(t)",
        "1e",
        "Unlimited Palette",
    ] {
        assert_eq!(k(t), Kind::Str(t.to_string()), "{t}");
    }
    assert_eq!(
        resolve_plain("1234567890123456789012345678901234567890"),
        None
    );
}

#[test]
fn yaml_nodes_keep_their_positions_and_quoting() {
    let root = parse("a: 1\nb: 'x'\nc:\n  - \"y\"\n  - {d: z}\n", "t.yaml").unwrap();
    let Kind::Map(m) = root.kind else { panic!() };
    assert_eq!((m[0].1.line, m[0].1.col), (1, 1));
    assert_eq!(
        (m[1].2.pos.line, m[1].2.pos.col, m[1].2.pos.quote),
        (2, 4, 1)
    );
    assert_eq!(m[1].2.kind, Kind::Str("x".into()));
    let Kind::Seq(items) = &m[2].2.kind else {
        panic!()
    };
    assert_eq!((items[0].pos.line, items[0].pos.col), (4, 5));
    assert_eq!((items[1].pos.line, items[1].pos.col), (5, 5));
    let e = parse("a: [1, 2\nb: 3\n", "t.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("t.yaml:") && e.contains("not valid YAML"),
        "{e}"
    );
    let e = parse("a: 1\na: 2\n", "t.yaml").unwrap_err().to_string();
    assert!(e.contains("t.yaml:2:1") && e.contains("twice"), "{e}");
    let e = parse("a: !!python/object:os.system x\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.yaml:1:4") && e.contains("not supported"),
        "{e}"
    );
}

/// pytti's `border_mode: clamp`, every preset's default, samples cutouts
/// inside the image at any `cutout_border` (its border only widens where
/// offsets are drawn): the crops come out at the perceptor's size.
#[test]
fn clamp_border_mode_samples_inside_the_image() {
    use zoetrope::guidance::cutouts::{BorderFill, CutoutSampler};
    let mut rng = zoetrope::rng::Rng::new(7).unwrap();
    let mut s = CutoutSampler::new(6, 1.0, 0.25, 16).unwrap();
    s.fill = BorderFill::Clamp;
    let image = rng.rand(&[1, 3, 32, 64]).unwrap();
    let out = s.sample(&image, &mut rng).unwrap();
    assert_eq!(out.size(), vec![6, 3, 16, 16]);
}
