//! `direct_image_prompts` (docs/design.md §6a): the grammar with caret
//! errors, the masked direct loss by hand, and renders through the binary.

use tch::{Kind, Tensor};
use zoetrope::guidance::loss::DirectLoss;
use zoetrope::scene::direct::parse_direct_image_prompts;
use zoetrope::scene::Scene;
use zoetrope::ErrorKind;

#[test]
fn grammar_reads_paths_weights_masks_and_stops() {
    let d =
        parse_direct_image_prompts("refs/a.png:0.5_m_1.png:0.1 | C:/x/b.png || c.png:2*t_-m.png")
            .unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0].path, std::path::Path::new("refs/a.png"));
    assert_eq!(d[0].weight.eval(0.0, 0.0), 0.5);
    assert_eq!(d[0].mask, Some(("m_1.png".into(), false)));
    assert_eq!(d[0].stop_at(0.0, 0.0), 0.1);
    assert_eq!(d[1].path, std::path::Path::new("C:/x/b.png"));
    assert_eq!(d[1].weight.eval(0.0, 0.0), 1.0);
    assert!(d[1].mask.is_none() && d[1].stop.is_none());
    assert_eq!(d[2].weight.eval(1.5, 0.0), 3.0);
    assert_eq!(d[2].mask, Some(("m.png".into(), true)));
    assert!(parse_direct_image_prompts("  ").unwrap().is_empty());
}

fn caret_at(e: &str) -> usize {
    e.lines().nth(2).unwrap().find('^').unwrap() - 4 + 1
}

#[test]
fn grammar_errors_mark_the_field() {
    let e = parse_direct_image_prompts("a.png:abc").unwrap_err();
    assert!(e.contains("weight `abc`"), "{e}");
    assert_eq!(caret_at(&e), 7, "{e}");
    let e = parse_direct_image_prompts("a.png:1:x+").unwrap_err();
    assert!(e.contains("stop `x+`"), "{e}");
    let e = parse_direct_image_prompts("a.png:1_").unwrap_err();
    assert!(e.contains("names no image"), "{e}");
    assert_eq!(caret_at(&e), 9, "{e}");
    let e = parse_direct_image_prompts("a.png:1_walk.mp4").unwrap_err();
    assert!(e.contains("video masks"), "{e}");
    let e = parse_direct_image_prompts("b.png | :1").unwrap_err();
    assert!(e.contains("names no image"), "{e}");
    let e = parse_direct_image_prompts("a.png:1:2:3").unwrap_err();
    assert!(e.contains("too many `:`"), "{e}");
    // Through a scene file: the file and the setting's line.
    let e = Scene::from_str(
        "scenes = \"a\"\nseed = 1\ndirect_image_prompts = \"x.png:oops\"",
        "dir/s.toml",
    )
    .expect_err("bad weight");
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(
        e.message.contains("dir/s.toml:3") && e.message.contains("oops"),
        "{e}"
    );
}

#[test]
fn scene_resolves_checks_and_plans_direct_images() {
    let s = Scene::from_str(
        "scenes = \"a\"\nseed = 1\ndirect_image_prompts = \"x.png:1/(1 - t)_m.png\"\nsteps_per_scene = 100\nsteps_per_frame = 50\nframes_per_second = 1",
        "dir/s.toml",
    )
    .unwrap();
    let d = &s.stabilization.direct_image_prompts[0];
    assert!(
        d.path.is_absolute() && d.path.ends_with("dir/x.png"),
        "{:?}",
        d.path
    );
    assert!(d.mask.as_ref().unwrap().0.ends_with("dir/m.png"));
    let e = s.check_files().expect_err("no dir/x.png");
    assert!(
        e.message.contains("direct_image_prompts") && e.message.contains("x.png"),
        "{e}"
    );
    let tl = zoetrope::schedule::Timeline::new(&s).unwrap();
    let e = tl
        .check_values(&s)
        .expect_err("1/(1 − t) is infinite at t = 1");
    assert!(
        e.message.contains("direct_image_prompts") && e.message.contains("step 50"),
        "{e}"
    );
}

#[test]
fn the_mask_multiplies_both_sides_of_each_mse() {
    // RGB image 1×3×1×2: pixel 0 all 1, pixel 1 all 3; target 0; mask [1, 0.5].
    let rgb = Tensor::from_slice(&[1.0f32, 3.0, 1.0, 3.0, 1.0, 3.0]).view([1, 3, 1, 2]);
    let target = Tensor::zeros([1, 3, 1, 2], (Kind::Float, tch::Device::Cpu));
    let mask = Tensor::from_slice(&[1.0f32, 0.5]).view([1, 1, 1, 2]);
    let plain = DirectLoss::rgb("d", &target).raw(None, &rgb).unwrap();
    assert!((plain.double_value(&[]) - 5.0).abs() < 1e-6);
    let masked = DirectLoss::rgb("d", &target)
        .with_masks(&mask, None)
        .raw(None, &rgb)
        .unwrap();
    // mean of (1·1)², (3·0.5)² over 3 channels: (1 + 2.25)/2.
    assert!((masked.double_value(&[]) - 1.625).abs() < 1e-6, "{masked}");
    // The latent term is masked by its own mask: z 1×1×1×2 = [2, 2], target
    // 0, latent mask [0, 1] → MSE 2; the loss is 2/2 + rgb/10.
    let z = Tensor::from_slice(&[2.0f32, 2.0]).view([1, 1, 1, 2]);
    let zt = Tensor::zeros([1, 1, 1, 2], (Kind::Float, tch::Device::Cpu));
    let lmask = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 1, 1, 2]);
    let both = DirectLoss::latent("d", &zt, &target)
        .with_masks(&mask, Some(&lmask))
        .raw(Some(&z), &rgb)
        .unwrap();
    assert!(
        (both.double_value(&[]) - (1.0 + 0.1625)).abs() < 1e-6,
        "{both}"
    );
}

/// Renders through the binary on the tiny models (`weights tiny`).
#[cfg(feature = "video")]
mod through_the_binary {
    use crate::support::{frames_of, render_ok, run_tiny as run, stderr, write_scene};
    use std::path::Path;

    const BASE: &str = r#"
scenes = "a lighthouse | the sea"
perceptors = ["tiny-clip"]
vqgan_model = "tiny-vqgan"
width = 64
height = 32
steps_per_scene = 8
steps_per_frame = 4
cutouts = 4
seed = 3
"#;

    fn render(dir: &Path, name: &str, extra: &str) -> Vec<Vec<u8>> {
        image::RgbImage::from_pixel(48, 24, image::Rgb([250, 20, 20]))
            .save(dir.join("red.png"))
            .unwrap();
        image::RgbImage::new(8, 8)
            .save(dir.join("black.png"))
            .unwrap();
        let scene = write_scene(dir, &format!("{name}.toml"), &format!("{BASE}{extra}"));
        let out = dir.join("out");
        render_ok(&scene, &out);
        frames_of(&out.join(name), 2)
    }

    #[test]
    fn direct_images_pull_and_a_black_mask_frees() {
        let t = tempfile::tempdir().unwrap();
        let none = render(t.path(), "none", "");
        let red = render(t.path(), "red", "direct_image_prompts = \"red.png:5\"\n");
        assert_ne!(none, red, "the direct image prompt changes the render");
        let again = render(
            t.path(),
            "red_again",
            "direct_image_prompts = \"red.png:5\"\n",
        );
        assert_eq!(red, again);
        // A black mask leaves nothing to pull: the render without it.
        let black = render(
            t.path(),
            "black",
            "direct_image_prompts = \"red.png:5_black.png\"\n",
        );
        assert_eq!(none, black);
        // Missing files are input errors naming the setting.
        let scene = write_scene(
            t.path(),
            "missing.toml",
            &format!("{BASE}direct_image_prompts = \"nowhere.png\"\n"),
        );
        let o = run(&[
            "render",
            scene.to_str().unwrap(),
            "--out",
            t.path().join("o").to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("direct_image_prompts") && stderr(&o).contains("nowhere.png"),
            "{}",
            stderr(&o)
        );
    }

    #[test]
    fn plan_shows_each_direct_image_weight_per_frame() {
        let t = tempfile::tempdir().unwrap();
        image::RgbImage::new(8, 8)
            .save(t.path().join("red.png"))
            .unwrap();
        // Four frames of 4 steps at 1 frame per second: t = 0, 1, 2, 3.
        let text = format!(
            "{}direct_image_prompts = \"red.png:2 - t/2:0.1*t\"\nsteps_per_scene = 16\nframes_per_second = 1\n",
            BASE.replace("steps_per_scene = 8\n", "")
        );
        let scene = write_scene(t.path(), "plan.toml", &text);
        let plan = |format: &str| {
            let o = run(&["plan", scene.to_str().unwrap(), "--format", format]);
            assert!(o.status.success(), "{}", stderr(&o));
            String::from_utf8(o.stdout).unwrap()
        };
        let doc: serde_json::Value = serde_json::from_str(&plan("json")).unwrap();
        let at = |frame: usize, key: &str| doc["timeline"][frame]["direct_images"][0][key].clone();
        let weights: Vec<f64> = (0..4).map(|k| at(k, "weight").as_f64().unwrap()).collect();
        assert_eq!(weights, [2.0, 1.5, 1.0, 0.5]);
        assert!(at(0, "stop").as_f64() == Some(0.0) && at(2, "stop").as_f64() == Some(0.2));
        assert!(at(0, "path").as_str().unwrap().ends_with("red.png"));
        let csv = plan("csv");
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .ends_with(",prompts,direct_image_prompts"),
            "{csv}"
        );
        let frame2 = lines.nth(1).unwrap();
        assert!(
            frame2.contains(",1.5:0.1:") && frame2.ends_with("red.png"),
            "{frame2}"
        );
        let table = plan("table");
        assert!(
            table.contains("direct [red.png] +2.000 (stop 0)")
                && table.contains("direct [red.png] +1.000 (stop 0.2)"),
            "{table}"
        );
        // Without the setting, the JSON has no such key.
        let plain = write_scene(t.path(), "plain.toml", BASE);
        let o = run(&["plan", plain.to_str().unwrap(), "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(doc["timeline"][0].get("direct_images").is_none());
    }
}
