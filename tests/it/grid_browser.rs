//! The offline viewer in a real browser: headless Chromium opens
//! `index.html?selftest=1` from `file://`; the page's self-test switches the
//! VQGAN and perceptor selectors, steps a frame, waits for the new image to
//! load and writes `SELFTEST OK` into the DOM, which `--dump-dom` prints.
//! Any console message or page error fails the test.
//!
//! Needs the Debian package `chromium` (`apt-get install -y chromium`);
//! without it the tests say so on stderr and pass without checking.
// The fake cells write their MP4s with the video feature.
#![cfg(feature = "video")]

use crate::support::grid::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use zoetrope::grid::judge::{Judge, SCORES_FILE};
use zoetrope::grid::{self, GridOptions, GridSpec};
use zoetrope::models::tiny::{write_tiny_models, TINY_CLIP_FILE};

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !p.is_empty() {
                    return Some(PathBuf::from(p));
                }
            }
        }
    }
    None
}

/// Loads `page?selftest=1` headless; returns (DOM, stderr).
fn load(browser: &Path, page: &Path, profile: &Path) -> (String, String) {
    let url = format!("file://{}?selftest=1", page.display());
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn selftest_result(dom: &str) -> String {
    let start = dom
        .find(r#"<div id="selftest">"#)
        .expect("selftest element")
        + 19;
    let end = start + dom[start..].find("</div>").unwrap();
    dom[start..end].to_string()
}

fn build_grid(root: &Path) -> PathBuf {
    build_grid_with(root, GridOptions::default())
}

fn build_grid_with(root: &Path, opts: GridOptions) -> PathBuf {
    let scene = write_scene(&root.join("scene"));
    let out = root.join("grid");
    let spec = GridSpec::parse("imagenet,coco", "ViT-B/32,RN50+ViT-B/16").unwrap();
    let fake = FakeRender::default();
    grid::run_grid(
        &scene,
        &spec,
        &out,
        &opts,
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap();
    out
}

#[test]
fn viewer_switches_cells_and_steps_frames_in_chromium() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: Chromium is not installed, so the viewer was not tested in a browser \
             (Debian: apt-get install -y chromium)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = build_grid(tmp.path());
    let (dom, stderr) = load(
        &browser,
        &out.join("index.html"),
        &tmp.path().join("profile"),
    );
    assert_eq!(selftest_result(&dom), "SELFTEST OK", "stderr:\n{stderr}");
    // The page recorded no error, and the console stayed silent.
    assert!(dom.contains(r#"<pre id="errors" hidden="">"#), "{dom}");
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console output: {console:#?}");
    // The self-test left the last cell at frame 2 selected.
    assert!(dom.contains(r#"src="coco__RN50+ViT-B-16/frame_00002.png""#));
}

#[test]
fn the_self_test_fails_when_the_stepped_frame_is_missing() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: Chromium is not installed (Debian: apt-get install -y chromium)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = build_grid(tmp.path());
    // The viewer still believes frame 2 exists; the browser cannot load it.
    std::fs::remove_file(out.join("coco__RN50+ViT-B-16/frame_00002.png")).unwrap();
    let (dom, stderr) = load(
        &browser,
        &out.join("index.html"),
        &tmp.path().join("profile"),
    );
    let result = selftest_result(&dom);
    assert!(
        result.starts_with("SELFTEST FAIL"),
        "expected a failure, got {result:?}; stderr:\n{stderr}"
    );
    assert!(result.contains("frame_00002.png"), "{result}");
}

/// The text between `<div id="ID">` and its `</div>`.
fn div_text(dom: &str, id: &str) -> String {
    let open = format!(r#"<div id="{id}">"#);
    let start = dom.find(&open).unwrap_or_else(|| panic!("no #{id}")) + open.len();
    let end = start + dom[start..].find("</div>").unwrap();
    dom[start..end].to_string()
}

#[test]
fn judged_viewer_sorts_the_cells_by_score_in_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: Chromium is not installed (Debian: apt-get install -y chromium)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("weights");
    write_tiny_models(&weights).unwrap();
    let judge = Judge::resolve(weights.join(TINY_CLIP_FILE).to_str().unwrap()).unwrap();
    let out = build_grid_with(
        tmp.path(),
        GridOptions {
            judge: Some(judge),
            ..GridOptions::default()
        },
    );
    let (dom, stderr) = load(
        &browser,
        &out.join("index.html"),
        &tmp.path().join("profile"),
    );
    assert_eq!(selftest_result(&dom), "SELFTEST OK", "stderr:\n{stderr}");
    assert_eq!(
        div_text(&dom, "ranking-selftest"),
        "RANKING OK",
        "stderr:\n{stderr}"
    );
    assert!(dom.contains(r#"<pre id="errors" hidden="">"#), "{dom}");
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console output: {console:#?}");
    // The self-test left the ranking sorted by the last-frame score: the
    // rows' order is scores.csv's cells by that score, highest first.
    let csv = std::fs::read_to_string(out.join(SCORES_FILE)).unwrap();
    let mut by_score: Vec<(String, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[6].parse::<f64>().unwrap())
        })
        .collect();
    assert_eq!(by_score.len(), 4);
    by_score.sort_by(|a, b| b.1.total_cmp(&a.1));
    let table = &dom[dom.find(r#"<table id="ranking">"#).unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let shown: Vec<&str> = table
        .split(r#"data-cell=""#)
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .collect();
    let expected: Vec<&str> = by_score.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(shown, expected);
    // The scores differ, so the sorted order is not simply the grid order
    // or its reverse by accident of equal keys.
    assert!(by_score.windows(2).all(|w| w[0].1 > w[1].1), "{by_score:?}");
}
