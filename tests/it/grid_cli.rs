//! `zoetrope grid` through the binary: argument errors and their exit
//! codes, and `--assemble` over fake cells listing the missing ones.
// The fake cells write their MP4s with the video feature.
#![cfg(feature = "video")]

use crate::support::grid::*;
use crate::support::stderr;
use std::process::{Command, Output};
use zoetrope::grid::{self, GridOptions, GridSpec, Shard};

fn zoetrope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoetrope"))
        .args(args)
        .output()
        .expect("run zoetrope")
}

#[test]
fn bad_arguments_exit_with_code_2_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(tmp.path());
    let scene = scene.to_str().unwrap();
    let out = tmp.path().join("g");
    let out = out.to_str().unwrap();

    let o = zoetrope(&[
        "grid",
        scene,
        "--vqgan",
        "imagnet",
        "--perceptors",
        "RN50",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean \"imagenet\""),
        "{}",
        stderr(&o)
    );

    let o = zoetrope(&[
        "grid",
        scene,
        "--vqgan",
        "imagenet",
        "--perceptors",
        "RN5O",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown perceptor"), "{}", stderr(&o));

    let o = zoetrope(&[
        "grid",
        scene,
        "--vqgan",
        "imagenet",
        "--perceptors",
        "RN50",
        "--shard",
        "2/2",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--shard 2/2"), "{}", stderr(&o));

    let o = zoetrope(&[
        "grid",
        scene,
        "--vqgan",
        "imagenet",
        "--perceptors",
        "RN50",
        "--sheets",
        "1,x",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--sheets"), "{}", stderr(&o));

    // --assemble on a folder that does not exist.
    let o = zoetrope(&[
        "grid",
        scene,
        "--vqgan",
        "imagenet",
        "--perceptors",
        "RN50",
        "--assemble",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!tmp.path().join("g").exists());
}

#[test]
fn assemble_builds_outputs_from_existing_cells_and_lists_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = write_scene(&tmp.path().join("scene"));
    let out = tmp.path().join("grid");
    let spec = GridSpec::parse("imagenet,coco", "ViT-B/32,RN50+ViT-B/16").unwrap();
    // Shard 0/2 renders cells 0 and 2.
    let fake = FakeRender::default();
    let opts = GridOptions {
        shard: Some(Shard::new(0, 2).unwrap()),
        ..GridOptions::default()
    };
    grid::run_grid(
        &scene,
        &spec,
        &out,
        &opts,
        &all_weights_present,
        &mut |s, d, r| fake.render(s, d, r),
    )
    .unwrap();
    assert!(!out.join("grid.mp4").exists());
    std::fs::remove_file(out.join("index.html")).unwrap();

    let o = zoetrope(&[
        "grid",
        scene.to_str().unwrap(),
        "--vqgan",
        "imagenet,coco",
        "--perceptors",
        "ViT-B/32,RN50+ViT-B/16",
        "--out",
        out.to_str().unwrap(),
        "--assemble",
        "--sheets",
        "2,4",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{stdout}", stderr(&o));
    assert!(stdout.contains("2 of 4 cells not complete"), "{stdout}");
    assert!(stdout.contains("imagenet__RN50+ViT-B-16"), "{stdout}");
    assert!(stdout.contains("coco__RN50+ViT-B-16"), "{stdout}");
    assert!(!stdout.contains("coco__ViT-B-32 ("), "{stdout}");
    assert!(out.join("grid.mp4").is_file());
    assert!(out.join("index.html").is_file());
    assert!(out.join("grid_frame_00002.png").is_file());
    assert!(out.join("grid_frame_00004.png").is_file());
    // Nothing was rendered by --assemble.
    assert!(!out.join("imagenet__RN50+ViT-B-16").exists());
}
