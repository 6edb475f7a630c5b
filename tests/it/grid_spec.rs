//! Grid specification: parsing of `--vqgan` / `--perceptors`, cell order and
//! folder names, `--shard`, cell status from folders, and the cell scenes.
// The fake cells write their MP4s with the video feature.
#![cfg(feature = "video")]

use crate::support::grid::*;
use std::fs;
use zoetrope::grid::{cell_status, CellStatus, GridSpec, Shard, COMPLETE_MARKER};
use zoetrope::output::frames::write_frame;
use zoetrope::scene::{Scene, VqganModel};
use zoetrope::ErrorKind;

#[test]
fn lists_parse_into_canonical_names_in_order() {
    let s = GridSpec::parse(
        " imagenet , COCO,openimages",
        "ViT-B/32,RN50+vit-b-16, ViTL14_336px",
    )
    .unwrap();
    assert_eq!(s.vqgans, ["imagenet", "coco", "openimages"]);
    assert_eq!(
        s.perceptors,
        vec![
            vec!["ViT-B/32".to_string()],
            vec!["RN50".to_string(), "ViT-B/16".to_string()],
            vec!["ViT-L/14@336px".to_string()],
        ]
    );
    assert_eq!((s.rows(), s.cols()), (3, 3));
    let cells = s.cells();
    assert_eq!(cells.len(), 9);
    let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "imagenet__ViT-B-32",
            "imagenet__RN50+ViT-B-16",
            "imagenet__ViT-L-14-336px",
            "coco__ViT-B-32"
        ]
    );
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!((c.row, c.col), (i / 3, i % 3));
    }
    assert_eq!(cells[1].label(), "imagenet × RN50+ViT-B/16");
    assert_eq!(cells[8].vqgan, "openimages");
    // Parsing is deterministic.
    assert_eq!(
        s.cells(),
        GridSpec::parse(
            "imagenet,coco,openimages",
            "ViT-B/32,RN50+ViT-B/16,ViT-L/14@336px"
        )
        .unwrap()
        .cells()
    );
}

#[test]
fn safetensors_paths_are_perceptors_named_by_their_stem() {
    let s = GridSpec::parse("imagenet", "ViT-B/32,/models/my clip.safetensors+RN50").unwrap();
    assert_eq!(s.perceptors[1], ["/models/my clip.safetensors", "RN50"]);
    assert_eq!(s.cells()[1].name, "imagenet__my-clip+RN50");
    assert_eq!(s.cells()[1].perceptor_label(), "my clip+RN50");
}

fn err(v: &str, p: &str) -> String {
    let e = GridSpec::parse(v, p).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input, "{e}");
    e.message
}

#[test]
fn bad_lists_give_clear_errors_with_suggestions() {
    let m = err("imagnet", "ViT-B/32");
    assert!(m.contains("unknown VQGAN model \"imagnet\""), "{m}");
    assert!(m.contains("did you mean \"imagenet\""), "{m}");
    assert!(m.contains("wikiart"), "{m}");
    let m = err("imagenet", "ViT-B/33");
    assert!(m.contains("unknown perceptor \"ViT-B/33\""), "{m}");
    assert!(m.contains("did you mean \"ViT-B/32\""), "{m}");
    let m = err("imagenet", "RN51+ViT-B/32");
    assert!(m.contains("RN51"), "{m}");
    assert!(err("imagenet,,coco", "RN50").contains("entry 2 is empty"));
    assert!(err("", "RN50").contains("--vqgan is empty"));
    assert!(err("imagenet", "RN50+").contains("empty model"));
    assert!(err("imagenet,Imagenet", "RN50").contains("twice"));
    assert!(err("imagenet", "RN50+ViT-B/32,ViT-B/32+RN50").contains("twice"));
    assert!(err("imagenet", "RN50+RN50").contains("twice"));
    // A VQGAN may be a weights file; its folder is named by the file stem.
    let s = GridSpec::parse("/m/my-vqgan.safetensors,tiny-vqgan", "tiny-clip").unwrap();
    assert_eq!(s.cells()[0].name, "my-vqgan__tiny-clip");
    assert_eq!(s.cells()[1].name, "tiny-vqgan__tiny-clip");
    // A path stem that collides with a model's folder name.
    let m = err("imagenet", "RN50,/x/RN50.safetensors");
    assert!(m.contains("share the folder imagenet__RN50"), "{m}");
}

#[test]
fn shards_parse_validate_and_partition() {
    assert_eq!(Shard::parse("0/4").unwrap(), Shard { index: 0, count: 4 });
    assert_eq!(
        Shard::parse(" 3 / 4 ").unwrap(),
        Shard { index: 3, count: 4 }
    );
    let m = Shard::parse("4/4").unwrap_err().message;
    assert!(m.contains("below the number of shards (0 to 3)"), "{m}");
    assert!(Shard::parse("1/0")
        .unwrap_err()
        .message
        .contains("at least 1"));
    for bad in ["1", "a/b", "-1/2", "1/2/3", "", "1.5/2"] {
        let e = Shard::parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.message.contains("expected I/N"), "{bad}: {e}");
    }
    let spec = GridSpec::parse("imagenet,coco,wikiart", "RN50,ViT-B/32,ViT-B/16").unwrap();
    let n = 4;
    let mut owners = vec![0; spec.cells().len()];
    for i in 0..n {
        let shard = Shard::new(i, n).unwrap();
        for c in spec.cells() {
            if shard.contains(c.index) {
                owners[c.index] += 1;
                assert_eq!(c.index % 4, i as usize);
            }
        }
    }
    assert!(owners.iter().all(|o| *o == 1), "{owners:?}");
}

#[test]
fn cell_status_reads_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let spec = GridSpec::parse("imagenet", "RN50").unwrap();
    let cell = &spec.cells()[0];
    assert_eq!(cell_status(out, cell, 3), CellStatus::Missing);
    let dir = cell.dir(out);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("settings.toml"), "").unwrap();
    assert_eq!(cell_status(out, cell, 3), CellStatus::Missing);
    let img = fake_frame(&cell.name, 1, 8, 8);
    write_frame(&dir, 1, &img).unwrap();
    write_frame(&dir, 3, &img).unwrap();
    // Frames must be consecutive: frame 2 is missing.
    assert_eq!(
        cell_status(out, cell, 3),
        CellStatus::Partial { frames_done: 1 }
    );
    write_frame(&dir, 2, &img).unwrap();
    // All frames but no MP4 yet.
    assert_eq!(
        cell_status(out, cell, 3),
        CellStatus::Partial { frames_done: 3 }
    );
    fs::write(cell.video_path(out), b"mp4").unwrap();
    assert_eq!(cell_status(out, cell, 3), CellStatus::Complete);
    // A longer scene makes it partial again.
    assert_eq!(
        cell_status(out, cell, 4),
        CellStatus::Partial { frames_done: 3 }
    );
    // The marker counts only for the frame count it records.
    fs::remove_file(cell.video_path(out)).unwrap();
    fs::write(
        dir.join(COMPLETE_MARKER),
        format!(r#"{{"cell": "{}", "frames": 3}}"#, cell.name),
    )
    .unwrap();
    assert_eq!(cell_status(out, cell, 3), CellStatus::Complete);
    assert_eq!(
        cell_status(out, cell, 4),
        CellStatus::Partial { frames_done: 3 }
    );
}

#[test]
fn cell_scenes_change_only_the_models_and_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scene(tmp.path());
    let scene = Scene::load(&path).unwrap();
    let spec = GridSpec::parse("coco,openimages", "RN50+ViT-B/16").unwrap();
    let cells = spec.cells();
    let s = spec.cell_scene(&scene, &cells[0]).unwrap();
    assert_eq!(
        s.image.vqgan_model,
        zoetrope::scene::VqganChoice::Named(VqganModel::Coco)
    );
    assert_eq!(s.guidance.perceptors, ["RN50", "ViT-B/16"]);
    assert_eq!(s.output.file_namespace, "coco__RN50+ViT-B-16");
    assert_eq!(s.optimizer.seed, scene.optimizer.seed);
    assert_eq!(s.text.scenes, scene.text.scenes);
    assert_eq!(s.timing.steps_per_frame, scene.timing.steps_per_frame);
    assert_eq!(
        (s.image.width, s.image.height),
        (scene.image.width, scene.image.height)
    );
    let s2 = spec.cell_scene(&scene, &cells[1]).unwrap();
    assert_eq!(
        s2.image.vqgan_model,
        zoetrope::scene::VqganChoice::Named(VqganModel::Openimages)
    );
    assert_eq!(s2.optimizer.seed, scene.optimizer.seed);

    // A scene sized for the f8 model is rounded down to 16 when the grid
    // also holds an f16 model, so every cell has the same size.
    let f8 = tmp.path().join("f8.toml");
    fs::write(
        &f8,
        "scenes = \"a\"\nvqgan_model = \"openimages\"\nwidth = 200\nheight = 120\nseed = 5\n",
    )
    .unwrap();
    let scene = Scene::load(&f8).unwrap();
    assert_eq!((scene.image.width, scene.image.height), (200, 120));
    let spec = GridSpec::parse("openimages,imagenet", "RN50").unwrap();
    for c in spec.cells() {
        let s = spec.cell_scene(&scene, &c).unwrap();
        assert_eq!((s.image.width, s.image.height), (192, 112), "{}", c.name);
        assert!(s.warnings.iter().any(|w| w.contains("rounded down to 192")));
    }
    // With only f8 models the size stays.
    let spec = GridSpec::parse("openimages", "RN50").unwrap();
    let s = spec.cell_scene(&scene, &spec.cells()[0]).unwrap();
    assert_eq!((s.image.width, s.image.height), (200, 120));

    // The grid compares VQGANs: an Unlimited Palette scene is refused.
    let up = tmp.path().join("up.toml");
    fs::write(&up, "scenes = \"a\"\nimage_model = \"Unlimited Palette\"\n").unwrap();
    let scene = Scene::load(&up).unwrap();
    let e = spec.cell_scene(&scene, &spec.cells()[0]).unwrap_err();
    assert!(e.message.contains("image_model"), "{e}");
}
