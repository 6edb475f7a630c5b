//! `zoetrope grid --judge`: the cells ranked by CLIP, through the binary
//! with the tiny models. The scores in `scores.csv` are recomputed here from
//! `zoetrope score` (per frame and prompt) and `zoetrope plan` (which
//! prompts count at each frame, with which weight), so the two commands
//! must agree; the viewer must show the scores, and a grid without
//! `--judge` must have no scores anywhere.
#![cfg(feature = "video")]

use crate::support::grid::*;
use crate::support::stderr;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zoetrope::grid::judge::{Judge, CSV_HEADER, SCORES_FILE};
use zoetrope::grid::{self, GridOptions, GridSpec, Shard};
use zoetrope::models::tiny::{write_tiny_models, TINY_CLIP_FILE};
use zoetrope::output::frames::frame_file_name;

/// `zoetrope ARGS` with the weights folder `weights`.
fn zoetrope(args: &[&str], weights: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoetrope"))
        .args(args)
        .env("ZOETROPE_WEIGHTS", weights)
        .env_remove("ZOETROPE_MANIFEST")
        .output()
        .expect("run zoetrope")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the tiny CLIP with every float tensor perturbed by seeded
/// noise (10 % of its spread): a second perceptor that guides differently.
fn clip_variant(weights: &Path, to: &Path) -> PathBuf {
    let tensors = tch::Tensor::read_safetensors(weights.join(TINY_CLIP_FILE)).unwrap();
    let mut rng = zoetrope::rng::Rng::new(7).unwrap();
    let changed: Vec<(String, tch::Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            if t.is_floating_point() && t.numel() > 1 {
                let std = t.std(true).double_value(&[]).max(1e-3);
                let noise = rng.randn(&t.size()).unwrap().to_kind(t.kind());
                let noisy = &t + noise * (0.1 * std);
                (n, noisy)
            } else {
                (n, t)
            }
        })
        .collect();
    tch::Tensor::write_safetensors(&changed, to).unwrap();
    to.to_path_buf()
}

/// One parsed row of `scores.csv` (no field of these tests needs quoting).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    cell: String,
    vqgan: String,
    perceptors: String,
    judge: String,
    status: String,
    frames_scored: u64,
    last: Option<f64>,
    mean: Option<f64>,
}

fn read_scores(out: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(out.join(SCORES_FILE)).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    assert_eq!(
        CSV_HEADER,
        "cell,vqgan,perceptors,judge,status,frames_scored,last_frame_score,mean_score"
    );
    let num = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 8, "{l}");
            Row {
                cell: f[0].into(),
                vqgan: f[1].into(),
                perceptors: f[2].into(),
                judge: f[3].into(),
                status: f[4].into(),
                frames_scored: f[5].parse().unwrap(),
                last: num(f[6]),
                mean: num(f[7]),
            }
        })
        .collect()
}

const SCENE: &str = r#"
scenes = "a lighthouse:2 | fog | gloom:-1 || a forest | a forest:0.5 | night"
scene_suffix = " | oil painting:0.5"
width = 64
height = 32
steps_per_scene = 4
steps_per_frame = 2
interpolation_steps = 2
cutouts = 4
seed = 11
device = "cpu"
"#;

/// Per frame: the text prompts `plan --format json` lists with a positive
/// weight, a text listed twice with the sum of its weights.
fn planned_prompts(scene: &Path, weights: &Path) -> Vec<Vec<(String, f64)>> {
    let plan: Value = serde_json::from_str(&ok(&zoetrope(
        &["plan", scene.to_str().unwrap(), "--format", "json"],
        weights,
    )))
    .unwrap();
    plan["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mut out: Vec<(String, f64)> = Vec::new();
            for p in f["prompts"].as_array().unwrap() {
                let w = p["weight"].as_f64().unwrap();
                if p["kind"] != "text" || w <= 0.0 {
                    continue;
                }
                let text = p["text"].as_str().unwrap().to_string();
                match out.iter_mut().find(|(t, _)| *t == text) {
                    Some((_, x)) => *x += w,
                    None => out.push((text, w)),
                }
            }
            out
        })
        .collect()
}

/// (last-frame score, mean score) of a cell's frames from `zoetrope score`
/// and the plan's prompts.
fn expected_scores(
    cell_dir: &Path,
    prompts: &[Vec<(String, f64)>],
    judge: &str,
    weights: &Path,
) -> (f64, f64) {
    let mut texts: Vec<&str> = Vec::new();
    for (t, _) in prompts.iter().flatten() {
        if !texts.contains(&t.as_str()) {
            texts.push(t);
        }
    }
    let frames: Vec<String> = (1..=prompts.len())
        .map(|k| cell_dir.join(frame_file_name(k)).display().to_string())
        .collect();
    let mut args: Vec<&str> = vec!["score"];
    args.extend(frames.iter().map(String::as_str));
    args.push("--prompt");
    args.extend(texts.iter().copied());
    args.extend(["--perceptors", judge, "--format", "json", "--device", "cpu"]);
    let sims: Value = serde_json::from_str(&ok(&zoetrope(&args, weights))).unwrap();
    let sim = |image: &str, prompt: &str| -> f64 {
        sims.as_array()
            .unwrap()
            .iter()
            .find(|r| r["image"] == image && r["prompt"] == prompt)
            .unwrap_or_else(|| panic!("no similarity for {image} / {prompt}"))["similarity"]
            .as_f64()
            .unwrap()
    };
    let per_frame: Vec<f64> = frames
        .iter()
        .zip(prompts)
        .map(|(img, ps)| {
            let den: f64 = ps.iter().map(|(_, w)| w).sum();
            ps.iter().map(|(t, w)| w * sim(img, t)).sum::<f64>() / den
        })
        .collect();
    let mean = per_frame.iter().sum::<f64>() / per_frame.len() as f64;
    (*per_frame.last().unwrap(), mean)
}

#[test]
fn judged_grid_scores_equal_zoetrope_score_and_the_viewer_shows_them() {
    let t = tempfile::tempdir().unwrap();
    let weights = t.path().join("weights");
    write_tiny_models(&weights).unwrap();
    let variant = clip_variant(&weights, &t.path().join("clipB.safetensors"));
    let scene = t.path().join("judge.toml");
    std::fs::write(&scene, SCENE).unwrap();
    let out = t.path().join("grid");
    let perceptors = format!("tiny-clip,{}", variant.display());
    let grid_args = |judge: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = [
            "grid",
            scene.to_str().unwrap(),
            "--vqgan",
            "tiny-vqgan",
            "--perceptors",
            &perceptors,
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(j) = judge {
            a.extend(["--judge".to_string(), j.to_string()]);
        }
        a
    };
    let run = |judge: Option<&str>| -> String {
        let a = grid_args(judge);
        ok(&zoetrope(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &weights,
        ))
    };

    let stdout = run(Some("tiny-clip"));
    assert!(stdout.contains("scores: "), "{stdout}");
    let rows = read_scores(&out);
    let cells = ["tiny-vqgan__tiny-clip", "tiny-vqgan__clipB"];
    assert_eq!(
        rows.iter().map(|r| r.cell.as_str()).collect::<Vec<_>>(),
        cells
    );
    let prompts = planned_prompts(&scene, &weights);
    assert_eq!(prompts.len(), 4);
    // Frame 3 holds the cross-fade (steps 4 and 5; the centred fade covers
    // steps 3 and 4) and mixes both scenes' prompts; "gloom" never counts.
    assert!(!prompts[1].iter().any(|(t, _)| t == "night"));
    assert!(prompts[2].iter().any(|(t, _)| t == "fog"));
    assert!(prompts[2].iter().any(|(t, _)| t == "night"));
    assert!(prompts.iter().flatten().all(|(t, _)| t != "gloom"));
    for (row, perceptor) in rows.iter().zip(["tiny-clip", "clipB"]) {
        assert_eq!(row.vqgan, "tiny-vqgan");
        assert_eq!(row.perceptors, perceptor);
        assert_eq!(row.judge, "tiny-clip");
        assert_eq!(row.status, "complete");
        assert_eq!(row.frames_scored, 4);
        let (last, mean) = expected_scores(&out.join(&row.cell), &prompts, "tiny-clip", &weights);
        let (got_last, got_mean) = (row.last.unwrap(), row.mean.unwrap());
        assert!((got_last - last).abs() < 1e-3, "{row:?}: last {last}");
        assert!((got_mean - mean).abs() < 1e-3, "{row:?}: mean {mean}");
    }
    // The cells' images differ, and so do their scores.
    assert_ne!(rows[0].last, rows[1].last);

    // The viewer carries the scores and the ranking.
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("\"judge\":\"tiny-clip\""),
        "no judge in the data"
    );
    assert!(html.contains("<table id=\"ranking\">"));
    assert!(html.contains("<select id=\"rank-sort\">"));
    assert!(html.contains("<a href=\"scores.csv\">"));
    for r in &rows {
        let shown = format!(
            "score: last frame {:.2}, mean {:.2}",
            r.last.unwrap(),
            r.mean.unwrap()
        );
        assert!(html.contains(&shown), "{shown} not in the viewer");
        let data = format!(
            "data-cell=\"{}\" data-last=\"{:.4}\" data-mean=\"{:.4}\"",
            r.cell,
            r.last.unwrap(),
            r.mean.unwrap()
        );
        assert!(html.contains(&data), "{data} not in the viewer");
    }
    let first_csv = std::fs::read(out.join(SCORES_FILE)).unwrap();

    // A restart renders nothing and still scores every (complete) cell.
    std::fs::remove_file(out.join(SCORES_FILE)).unwrap();
    let stdout = run(Some("tiny-clip"));
    assert!(stdout.contains("0 rendered"), "{stdout}");
    assert_eq!(std::fs::read(out.join(SCORES_FILE)).unwrap(), first_csv);

    // Without --judge: no scores.csv, and no score in the viewer.
    std::fs::remove_file(out.join(SCORES_FILE)).unwrap();
    let stdout = run(None);
    assert!(!stdout.contains("scores: "), "{stdout}");
    assert!(!out.join(SCORES_FILE).exists());
    let plain = std::fs::read_to_string(out.join("index.html")).unwrap();
    for judged in [
        "\"judge\"",
        "\"score\"",
        "ranking",
        "rank-sort",
        "scores.csv",
        "class=\"score\"",
    ] {
        assert!(
            !plain.contains(judged),
            "{judged} in a grid without --judge"
        );
    }
    // The judged page is the plain page plus the ranking: removing the
    // judge's additions gives the plain page back.
    assert!(html.len() > plain.len());
    assert_eq!(strip_judged(&html), plain);
}

/// The judged page without what the judge adds: the ranking section, its
/// style and script, the score lines and the scores in the data.
fn strip_judged(html: &str) -> String {
    let cut = |s: &str, from: &str, to: &str| -> String {
        let a = s.find(from).unwrap_or_else(|| panic!("no {from}"));
        let b = a + s[a..].find(to).unwrap_or_else(|| panic!("no {to}")) + to.len();
        format!("{}{}", &s[..a], &s[b..])
    };
    let mut s = cut(
        html,
        "<h2>Ranking</h2>",
        "<div id=\"ranking-selftest\"></div>\n",
    );
    let a = s.find(".score{").unwrap();
    let b = a + s[a..].find("</style>").unwrap();
    s = format!("{}{}", &s[..a], &s[b..]);
    let script = s.rfind("<script>\n\"use strict\";").unwrap();
    let end = script + s[script..].find("</script>\n").unwrap() + "</script>\n".len();
    s = format!("{}{}", &s[..script], &s[end..]);
    while let Some(a) = s.find("<br><span class=\"score\">") {
        let b = a + s[a..].find("</span>").unwrap() + "</span>".len();
        s = format!("{}{}", &s[..a], &s[b..]);
    }
    while let Some(a) = s.find(",\"score\":{") {
        let b = a + s[a..].find('}').unwrap() + 1;
        s = format!("{}{}", &s[..a], &s[b..]);
    }
    s.replace(",\"judge\":\"tiny-clip\"", "")
}

#[test]
fn a_bad_judge_stops_the_grid_before_any_cell_renders() {
    let t = tempfile::tempdir().unwrap();
    let scene = write_scene(t.path());
    let scene = scene.to_str().unwrap();
    let out = t.path().join("g");
    let weights = t.path().join("no-weights");
    let grid = |judge: &str| {
        zoetrope(
            &[
                "grid",
                scene,
                "--vqgan",
                "imagenet",
                "--perceptors",
                "RN50",
                "--out",
                out.to_str().unwrap(),
                "--judge",
                judge,
            ],
            &weights,
        )
    };
    // An unknown perceptor: an input error naming --judge and the closest name.
    let o = grid("ViT-B/23");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--judge"), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean"), "{}", stderr(&o));
    // One perceptor only.
    let o = grid("ViT-B/32+RN50");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--judge"), "{}", stderr(&o));
    // A known perceptor whose weights are missing: the weights error (exit
    // code 3) naming --judge; the cells' own missing weights do not come first.
    let o = grid("ViT-B/32");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--judge ViT-B/32"), "{}", stderr(&o));
    // A file that is not a CLIP model.
    let bogus = t.path().join("bogus.safetensors");
    std::fs::write(&bogus, b"not a safetensors file").unwrap();
    let o = grid(bogus.to_str().unwrap());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--judge"), "{}", stderr(&o));
    // Nothing was rendered or written.
    assert!(!out.exists());
}

/// The viewer's ranking table.
fn ranking_table(html: &str) -> &str {
    let a = html.find("<table id=\"ranking\">").expect("a ranking");
    &html[a..a + html[a..].find("</table>").unwrap()]
}

/// The tiny CLIP as a judge given by its path.
fn tiny_judge(dir: &Path) -> Judge {
    write_tiny_models(dir).unwrap();
    Judge::resolve(dir.join(TINY_CLIP_FILE).to_str().unwrap()).unwrap()
}

#[test]
fn shards_score_every_complete_cell_and_assemble_agrees() {
    let t = tempfile::tempdir().unwrap();
    let scene = write_scene(&t.path().join("scene"));
    let out = t.path().join("grid");
    let spec = GridSpec::parse("imagenet,coco", "ViT-B/32,RN50+ViT-B/16").unwrap();
    let judge = tiny_judge(&t.path().join("weights"));
    let fake = FakeRender::default();
    let shard = |i: u32| GridOptions {
        shard: Some(Shard::new(i, 2).unwrap()),
        judge: Some(judge.clone()),
        ..GridOptions::default()
    };
    let report = grid::run_grid(
        &scene,
        &spec,
        &out,
        &shard(0),
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap();
    assert_eq!(report.outputs.scores, Some(out.join(SCORES_FILE)));
    let first = read_scores(&out);
    assert_eq!(first.len(), 4);
    // Shard 0 rendered cells 0 and 2; cells 1 and 3 are not rendered yet.
    for (i, r) in first.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(r.status, "complete", "{r:?}");
            assert_eq!(r.frames_scored, FRAMES);
            assert!(r.last.is_some() && r.mean.is_some(), "{r:?}");
        } else {
            assert_eq!(r.status, "not rendered", "{r:?}");
            assert_eq!((r.frames_scored, r.last, r.mean), (0, None, None));
        }
        assert_eq!(r.judge, "tiny-clip");
    }
    // Shard 1 scores its own cells and shard 0's.
    grid::run_grid(
        &scene,
        &spec,
        &out,
        &shard(1),
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap();
    assert_eq!(fake.calls().len(), 4);
    let all = read_scores(&out);
    assert!(all
        .iter()
        .all(|r| r.status == "complete" && r.mean.is_some()));
    assert_eq!(all[0], first[0]);
    assert_eq!(all[2], first[2]);
    // The four cells have different colours, hence different scores.
    for i in 0..4 {
        for j in 0..i {
            assert_ne!(all[i].mean, all[j].mean, "cells {i} and {j}");
        }
    }
    let csv = std::fs::read(out.join(SCORES_FILE)).unwrap();
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();

    // `--assemble --judge` through the binary writes the same scores.csv
    // and the same viewer as the shards did.
    std::fs::remove_file(out.join(SCORES_FILE)).unwrap();
    let o = zoetrope(
        &[
            "grid",
            scene.to_str().unwrap(),
            "--vqgan",
            "imagenet,coco",
            "--perceptors",
            "ViT-B/32,RN50+ViT-B/16",
            "--out",
            out.to_str().unwrap(),
            "--assemble",
            "--judge",
            judge.path.to_str().unwrap(),
        ],
        &t.path().join("no-weights"),
    );
    let stdout = ok(&o);
    assert!(stdout.contains("scores: "), "{stdout}");
    assert_eq!(std::fs::read(out.join(SCORES_FILE)).unwrap(), csv);
    // The viewer's ranking is the same (the page now also links grid.mp4).
    let assembled = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert_eq!(ranking_table(&assembled), ranking_table(&html));

    // A cell that lost its last frame is partial: listed, not scored.
    let cell = out.join("coco__ViT-B-32");
    std::fs::remove_file(cell.join(frame_file_name(FRAMES as usize))).unwrap();
    std::fs::remove_file(cell.join(grid::COMPLETE_MARKER)).unwrap();
    grid::assemble_grid_judged(&scene, &spec, &out, None, Some(&judge)).unwrap();
    let partial = read_scores(&out);
    assert_eq!(partial[2].cell, "coco__ViT-B-32");
    assert_eq!(partial[2].status, "partial");
    assert_eq!(
        (partial[2].frames_scored, partial[2].last, partial[2].mean),
        (0, None, None)
    );
    assert_eq!(partial[3], all[3]);
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("not scored"));
}
