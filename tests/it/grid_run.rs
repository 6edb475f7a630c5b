//! The grid end to end with fake cells: a 2 × 2 grid's folders, grid.mp4,
//! contact sheets and index.html; skipping complete cells, resuming partial
//! ones; the weights check; sharding and `--assemble`.
// The fake cells write their MP4s with the video feature.
#![cfg(feature = "video")]

use crate::support::grid::*;
use std::fs;
use std::path::Path;
use zoetrope::grid::assemble::{Layout, GAP};
use zoetrope::grid::{
    self, assemble_grid, cell_status, CellOutcome, CellStatus, GridOptions, GridSpec, Shard,
};
use zoetrope::output::frames::read_rgb;
use zoetrope::output::video::read_mp4;
use zoetrope::ErrorKind;

fn spec() -> GridSpec {
    GridSpec::parse("imagenet,coco", "ViT-B/32,RN50+ViT-B/16").unwrap()
}

fn run(
    scene: &Path,
    out: &Path,
    shard: Option<Shard>,
    fake: &FakeRender,
) -> zoetrope::Result<grid::GridReport> {
    let opts = GridOptions {
        shard,
        sheets: None,
        progress: false,
        judge: None,
    };
    grid::run_grid(
        scene,
        &spec(),
        out,
        &opts,
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
}

/// Checks that the pixel at (x, y) of `img` is within `tol` of `want`.
fn near(img: &image::RgbImage, x: u32, y: u32, want: [u8; 3], tol: i32) -> bool {
    let p = img.get_pixel(x, y).0;
    (0..3).all(|i| (p[i] as i32 - want[i] as i32).abs() <= tol)
}

#[test]
fn two_by_two_grid_builds_cells_video_sheets_and_viewer() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));
    let out = tmp.path().join("grid");
    let fake = FakeRender::default();
    let report = run(&scene, &out, None, &fake).unwrap();

    // Four cells, rendered once each, in row-major order, same seed.
    let names: Vec<String> = fake.calls().iter().map(|c| c.cell.clone()).collect();
    assert_eq!(
        names,
        [
            "imagenet__ViT-B-32",
            "imagenet__RN50+ViT-B-16",
            "coco__ViT-B-32",
            "coco__RN50+ViT-B-16"
        ]
    );
    assert!(fake.calls().iter().all(|c| c.seed == 1234 && !c.resume));
    assert_eq!(fake.calls()[3].vqgan, "coco");
    assert_eq!(fake.calls()[3].perceptors, ["RN50", "ViT-B/16"]);
    assert!(report
        .cells
        .iter()
        .all(|c| c.outcome == CellOutcome::Rendered));
    for c in spec().cells() {
        let dir = out.join(&c.name);
        assert!(dir.join(format!("{}.mp4", c.name)).is_file());
        assert!(dir.join("frame_00006.png").is_file());
        assert!(dir.join(grid::COMPLETE_MARKER).is_file());
        assert_eq!(cell_status(&out, &c, FRAMES), CellStatus::Complete);
    }
    assert!(report.outputs.missing.is_empty());

    // grid.mp4: the tiled size, one frame per scene frame, tiles in place.
    let layout = Layout::new(2, 2, W, H);
    assert_eq!(layout.width, 2 * W + GAP);
    assert_eq!(layout.height, 2 * (layout.label_h + H) + GAP);
    let video = read_mp4(&out.join("grid.mp4")).unwrap();
    assert_eq!((video.width, video.height), (layout.width, layout.height));
    assert_eq!(video.frames.len() as u64, FRAMES);
    for cell in spec().cells() {
        let (x0, y0) = layout.tile_origin(cell.row as u32, cell.col as u32);
        for k in [1u64, 6] {
            let want = fake_frame(&cell.name, k, W, H);
            let (x, y) = (W / 2, H / 2);
            let got = &video.frames[k as usize - 1];
            assert!(
                near(
                    got,
                    x0 + x,
                    y0 + layout.label_h + y,
                    want.get_pixel(x, y).0,
                    12
                ),
                "cell {} frame {k}: {:?} vs {:?}",
                cell.name,
                got.get_pixel(x0 + x, y0 + layout.label_h + y),
                want.get_pixel(x, y)
            );
        }
    }

    // Contact sheets at the first, middle and last frame, lossless.
    let sheets: Vec<String> = report
        .outputs
        .sheets
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        sheets,
        [
            "grid_frame_00001.png",
            "grid_frame_00003.png",
            "grid_frame_00006.png"
        ]
    );
    let sheet = read_rgb(&out.join("grid_frame_00003.png")).unwrap();
    assert_eq!(sheet.dimensions(), (layout.width, layout.height));
    let cell = &spec().cells()[1];
    let (x0, y0) = layout.tile_origin(0, 1);
    let want = fake_frame(&cell.name, 3, W, H);
    for (x, y) in [(0, 0), (W - 1, H - 1), (17, 9)] {
        assert_eq!(
            sheet.get_pixel(x0 + x, y0 + layout.label_h + y),
            want.get_pixel(x, y)
        );
    }
    // The label bar holds light text pixels.
    let label_ink = (0..layout.label_h)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .filter(|(x, y)| sheet.get_pixel(x0 + x, y0 + y).0[0] > 200)
        .count();
    assert!(label_ink > 30, "label has {label_ink} text pixels");

    // index.html: every referenced file exists, and so does every frame the
    // embedded data makes the viewer load.
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    let refs = html_refs(&html);
    assert!(refs.iter().any(|r| r == "grid.mp4"));
    assert!(refs.iter().any(|r| r == "grid_frame_00001.png"));
    assert!(refs
        .iter()
        .any(|r| r == "coco__RN50+ViT-B-16/settings.toml"));
    assert!(refs.len() >= 4 * 3 + 1 + 3);
    for r in &refs {
        assert!(
            !r.contains("://") && !r.starts_with('/'),
            "{r} is not relative"
        );
        assert!(out.join(r).is_file(), "index.html references missing {r}");
    }
    let data = html_data(&html);
    assert_eq!(data["frames"], FRAMES);
    assert_eq!(data["cells"].as_array().unwrap().len(), 4);
    for c in data["cells"].as_array().unwrap() {
        assert_eq!(c["frames_done"], FRAMES);
        assert_eq!(c["settings_source"], "settings.toml");
        assert_eq!(c["settings"]["seed"], 1234);
        for k in 1..=FRAMES {
            let p = format!("{}/frame_{k:05}.png", c["name"].as_str().unwrap());
            assert!(out.join(&p).is_file(), "{p}");
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("fetch("));
    assert!(!html.contains(&tmp.path().to_string_lossy().to_string()));

    // A second run finds everything complete and renders nothing.
    let again = FakeRender::default();
    let report = run(&scene, &out, None, &again).unwrap();
    assert!(again.calls().is_empty());
    assert!(report
        .cells
        .iter()
        .all(|c| c.outcome == CellOutcome::AlreadyComplete));
}

#[test]
fn an_interrupted_cell_is_resumed_and_complete_cells_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));
    let out = tmp.path().join("grid");
    let fake = FakeRender::default();
    // Cell 0 renders fully; cell 1 stops after 2 frames.
    let mut n = 0;
    let err = grid::run_grid(
        &scene,
        &spec(),
        &out,
        &GridOptions::default(),
        &all_weights_present,
        &mut |s, d, r| {
            n += 1;
            if n == 2 {
                *fake.fail_after.borrow_mut() = Some(2);
            }
            fake.render(s, d, r)
        },
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Interrupted);
    assert!(err.message.contains("imagenet__RN50+ViT-B-16"), "{err}");
    let cells = spec().cells();
    assert_eq!(cell_status(&out, &cells[0], FRAMES), CellStatus::Complete);
    assert_eq!(
        cell_status(&out, &cells[1], FRAMES),
        CellStatus::Partial { frames_done: 2 }
    );
    assert_eq!(cell_status(&out, &cells[2], FRAMES), CellStatus::Missing);
    // The viewer was refreshed after the first cell finished.
    assert!(out.join("index.html").is_file());

    let again = FakeRender::default();
    let report = run(&scene, &out, None, &again).unwrap();
    let calls = again.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].cell, "imagenet__RN50+ViT-B-16");
    assert!(calls[0].resume);
    assert!(!calls[1].resume && !calls[2].resume);
    assert_eq!(report.cells[0].outcome, CellOutcome::AlreadyComplete);
    assert_eq!(
        report.cells[1].outcome,
        CellOutcome::Resumed { frames_done: 2 }
    );
    for c in &cells {
        assert_eq!(cell_status(&out, c, FRAMES), CellStatus::Complete);
    }
}

#[test]
fn missing_weights_are_reported_together_before_rendering() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));
    let out = tmp.path().join("grid");
    let fake = FakeRender::default();
    let check = |perceptors: &[String], vqgan: &str| {
        let mut m = Vec::new();
        if vqgan == "coco" {
            m.push("VQGAN coco: weights/vqgan/coco.safetensors is missing".to_string());
        }
        if perceptors.iter().any(|p| p == "ViT-B/16") {
            m.push("CLIP ViT-B/16: weights/clip/ViT-B-16.safetensors is missing".to_string());
        }
        m
    };
    let err = grid::run_grid(
        &scene,
        &spec(),
        &out,
        &GridOptions::default(),
        &check,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Weights);
    assert!(err.message.contains("2 weights files"), "{err}");
    assert!(err.message.contains("coco.safetensors"));
    assert!(err.message.contains("ViT-B-16.safetensors"));
    assert_eq!(err.message.matches("coco.safetensors").count(), 1);
    assert!(fake.calls().is_empty());
    assert!(!out.exists(), "nothing is created when weights are missing");
}

#[test]
fn shards_render_disjoint_cells_and_assemble_matches_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));

    let single = tmp.path().join("single");
    run(&scene, &single, None, &FakeRender::default()).unwrap();

    let shared = tmp.path().join("shared");
    let mut seen = Vec::new();
    for i in 0..2 {
        let fake = FakeRender::default();
        let report = run(&scene, &shared, Some(Shard::new(i, 2).unwrap()), &fake).unwrap();
        let mine: Vec<String> = fake.calls().into_iter().map(|c| c.cell).collect();
        let expected: Vec<String> = spec()
            .cells()
            .into_iter()
            .filter(|c| c.index % 2 == i as usize)
            .map(|c| c.name)
            .collect();
        assert_eq!(mine, expected, "shard {i}/2");
        let others = report
            .cells
            .iter()
            .filter(|c| c.outcome == CellOutcome::OtherShard)
            .count();
        assert_eq!(others, 2);
        seen.extend(mine);
    }
    seen.sort();
    let mut all: Vec<String> = spec().cells().into_iter().map(|c| c.name).collect();
    all.sort();
    assert_eq!(seen, all, "the shards together cover the grid exactly once");

    // Shards leave the video to the assemble step.
    assert!(!shared.join("grid.mp4").exists());
    let outputs = assemble_grid(&scene, &spec(), &shared, None).unwrap();
    assert!(outputs.missing.is_empty());
    assert_eq!(
        fs::read(single.join("index.html")).unwrap(),
        fs::read(shared.join("index.html")).unwrap(),
        "index.html differs between a single run and shards + --assemble"
    );
    for k in [1, 3, 6] {
        let name = format!("grid_frame_{k:05}.png");
        assert_eq!(
            fs::read(single.join(&name)).unwrap(),
            fs::read(shared.join(&name)).unwrap(),
            "{name} differs"
        );
    }
    let a = read_mp4(&single.join("grid.mp4")).unwrap();
    let b = read_mp4(&shared.join("grid.mp4")).unwrap();
    assert_eq!(a.frames.len(), b.frames.len());
    // libx264 does not promise identical bytes between two encodes here
    // (its threads), so the two videos are compared as pictures.
    for (i, (x, y)) in a.frames.iter().zip(&b.frames).enumerate() {
        let total: u64 = x
            .as_raw()
            .iter()
            .zip(y.as_raw())
            .map(|(p, q)| (*p as i64 - *q as i64).unsigned_abs())
            .sum();
        let mean = total as f64 / x.as_raw().len() as f64;
        assert!(
            mean < 3.0,
            "grid.mp4 frame {}: mean difference {mean}",
            i + 1
        );
    }
}

#[test]
fn assemble_shows_missing_cells_as_dark_labelled_tiles() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));
    let out = tmp.path().join("grid");
    // Only cell 3 (coco × RN50+ViT-B/16), via shard 3/4.
    run(
        &scene,
        &out,
        Some(Shard::new(3, 4).unwrap()),
        &FakeRender::default(),
    )
    .unwrap();
    let outputs = assemble_grid(&scene, &spec(), &out, Some(vec![2, 5])).unwrap();
    assert_eq!(outputs.missing.len(), 3);
    assert!(outputs.missing[0].starts_with("imagenet__ViT-B-32"));
    let layout = Layout::new(2, 2, W, H);
    let video = read_mp4(&out.join("grid.mp4")).unwrap();
    assert_eq!(video.frames.len() as u64, FRAMES);
    let sheet = read_rgb(&out.join("grid_frame_00005.png")).unwrap();
    let (x0, y0) = layout.tile_origin(0, 0);
    // A corner of the missing tile is the dark fill, and its label has text.
    assert_eq!(
        sheet.get_pixel(x0 + 1, y0 + layout.label_h + 1).0,
        [28, 28, 28]
    );
    let ink = (0..layout.label_h)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .filter(|(x, y)| sheet.get_pixel(x0 + x, y0 + y).0[0] > 200)
        .count();
    assert!(ink > 30);
    // The rendered cell is in place.
    let (x1, y1) = layout.tile_origin(1, 1);
    let want = fake_frame("coco__RN50+ViT-B-16", 5, W, H);
    assert_eq!(
        sheet.get_pixel(x1 + 5, y1 + layout.label_h + 5),
        want.get_pixel(5, 5)
    );
    // The viewer links only files that exist and embeds planned settings
    // for the missing cells.
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    for r in html_refs(&html) {
        assert!(out.join(&r).is_file(), "missing {r}");
    }
    let data = html_data(&html);
    let c0 = &data["cells"][0];
    assert_eq!(c0["frames_done"], 0);
    assert_eq!(c0["settings"]["vqgan_model"], "imagenet");
    assert_eq!(c0["settings"]["perceptors"][0], "ViT-B/32");
    assert_eq!(c0["settings"]["file_namespace"], "imagenet__ViT-B-32");
    assert!(c0["settings_source"]
        .as_str()
        .unwrap()
        .starts_with("planned"));
    // A contact sheet frame beyond the scene is an input error.
    let err = assemble_grid(&scene, &spec(), &out, Some(vec![7])).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("6 frames"), "{err}");
}

#[test]
fn prompts_cannot_break_out_of_the_embedded_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scene");
    fs::create_dir_all(&dir).unwrap();
    let scene = dir.join("nasty.toml");
    let prompt = "a </script><script>alert(1)</script> & <b>bold</b>";
    fs::write(
        &scene,
        format!(
            "scenes = \"{prompt}\"\nwidth = 32\nheight = 16\nsteps_per_scene = 2\n\
             steps_per_frame = 1\nseed = 3\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("grid");
    let spec = GridSpec::parse("imagenet", "RN50").unwrap();
    let fake = FakeRender::default();
    grid::run_grid(
        &scene,
        &spec,
        &out,
        &GridOptions::default(),
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap();
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    // Only the page's own three script elements end.
    assert_eq!(html.matches("</script>").count(), 3);
    assert!(!html.contains("<script>alert"));
    let data = html_data(&html);
    assert_eq!(data["cells"][0]["settings"]["scenes"], prompt);
}
