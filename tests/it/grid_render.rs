//! A real 2 × 2 grid: two small VQGANs × two small CLIPs that the test
//! creates (the tiny models and seeded variants of them), rendered with the real frame loop
//! through `zoetrope grid`, then checked: cell folders, the tiled grid.mp4,
//! contact sheets and the viewer's references.
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::process::Command;
use zoetrope::grid::assemble::Layout;
use zoetrope::models::tiny::write_tiny_models;
use zoetrope::output::video::read_mp4;

/// The tiny CLIP and VQGAN (`weights tiny`), and for `seed > 1` a variant of
/// each: every tensor perturbed by seeded noise of 20 % of its spread.
fn make_models(dir: &Path, seed: i64) -> (PathBuf, PathBuf) {
    let base = dir.join("base");
    write_tiny_models(&base).unwrap();
    let variant = |from: &str, to: PathBuf| -> PathBuf {
        let tensors = tch::Tensor::read_safetensors(base.join(from)).unwrap();
        let mut rng = zoetrope::rng::Rng::new(seed as u64).unwrap();
        let changed: Vec<(String, tch::Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| {
                if seed > 1 && t.is_floating_point() && t.numel() > 1 {
                    let std = t.std(true).double_value(&[]).max(1e-3);
                    let noise = rng.randn(&t.size()).unwrap().to_kind(t.kind());
                    let noisy = &t + noise * (0.2 * std);
                    (n, noisy)
                } else {
                    (n, t)
                }
            })
            .collect();
        tch::Tensor::write_safetensors(&changed, &to).unwrap();
        to
    };
    (
        variant(
            "clip/tiny-clip.safetensors",
            dir.join(format!("clip{seed}.safetensors")),
        ),
        variant(
            "vqgan/tiny-vqgan.safetensors",
            dir.join(format!("vqgan{seed}.safetensors")),
        ),
    )
}

#[test]
fn two_by_two_grid_renders_every_cell_and_the_comparison() {
    let t = tempfile::tempdir().unwrap();
    let (c1, v1) = make_models(t.path(), 1);
    let (c2, v2) = make_models(t.path(), 2);
    let scene = t.path().join("g.toml");
    std::fs::write(
        &scene,
        r#"
scenes = "a lighthouse || a forest"
width = 64
height = 32
steps_per_scene = 6
steps_per_frame = 3
interpolation_steps = 2
cutouts = 4
animation_mode = "2D"
zoom_x_2d = 2
seed = 5
"#,
    )
    .unwrap();
    let out = t.path().join("grid");
    let vqgans = format!("{},{}", v1.display(), v2.display());
    let clips = format!("{},{}", c1.display(), c2.display());
    let o = Command::new(env!("CARGO_BIN_EXE_zoetrope"))
        .args([
            "grid",
            scene.to_str().unwrap(),
            "--vqgan",
            &vqgans,
            "--perceptors",
            &clips,
        ])
        .args(["--out", out.to_str().unwrap()])
        .env("ZOETROPE_WEIGHTS", t.path().join("none"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cells = [
        "vqgan1__clip1",
        "vqgan1__clip2",
        "vqgan2__clip1",
        "vqgan2__clip2",
    ];
    let mut firsts = Vec::new();
    for c in cells {
        let dir = out.join(c);
        let mp4 = read_mp4(&dir.join(format!("{c}.mp4"))).unwrap();
        assert_eq!(mp4.frames.len(), 4, "{c}");
        assert_eq!((mp4.width, mp4.height), (64, 32), "{c}");
        firsts.push(std::fs::read(dir.join("frame_00004.png")).unwrap());
    }
    // Cells differ only by model. Rows (VQGANs) differ in every frame; a short
    // run may not move the latent across a codebook boundary, so columns
    // (perceptors) are compared by the losses they measured, which differ
    // whenever the perceptors do.
    assert_ne!(firsts[0], firsts[2]);
    assert_ne!(firsts[1], firsts[3]);
    let losses = |c: &str| -> Vec<f64> {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(c).join("metadata.json")).unwrap(),
        )
        .unwrap();
        meta["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["loss"].as_f64().unwrap())
            .collect()
    };
    assert_ne!(losses(cells[0]), losses(cells[1]));
    assert_ne!(losses(cells[2]), losses(cells[3]));
    let grid = read_mp4(&out.join("grid.mp4")).unwrap();
    assert_eq!(grid.frames.len(), 4);
    // Tiled: two rows and two columns of 64 × 32 cells under their labels.
    let layout = Layout::new(2, 2, 64, 32);
    assert_eq!((grid.width, grid.height), (layout.width, layout.height));
    let sheets: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("grid_frame_") && n.ends_with(".png"))
        .collect();
    assert!(!sheets.is_empty());
    for sheet in &sheets {
        let img = zoetrope::output::frames::read_rgb(&out.join(sheet)).unwrap();
        assert_eq!(img.dimensions(), (layout.width, layout.height), "{sheet}");
    }
    // Every file the viewer references exists, each cell's resolved settings
    // (the render's settings.toml) are embedded, and its frames are there.
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let refs: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|a| html.split(a).skip(1).map(|r| r.split('"').next().unwrap()))
        .filter(|r| !r.is_empty() && !r.starts_with('#') && !r.starts_with("javascript:"))
        .collect();
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(out.join(r).is_file(), "index.html references missing {r}");
    }
    for c in cells {
        assert!(out.join(c).join("settings.toml").is_file());
        assert!(html.contains(&format!("\"{c}\"")), "{c} not in the viewer");
    }
    assert!(
        html.contains("\"settings_source\":\"settings.toml\""),
        "viewer lacks the rendered settings"
    );
    // Re-running skips the complete cells.
    let o = Command::new(env!("CARGO_BIN_EXE_zoetrope"))
        .args([
            "grid",
            scene.to_str().unwrap(),
            "--vqgan",
            &vqgans,
            "--perceptors",
            &clips,
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("vqgan1__clip1/frame_00004.png")).unwrap(),
        firsts[0]
    );
}
