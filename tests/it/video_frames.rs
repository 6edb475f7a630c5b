//! PNG frames, image loading, atomic writes and run folders.

use std::fs;

use image::{Rgb, RgbImage};
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use zoetrope::output::frames::{
    frame_file_name, load_image, parse_frame_file_name, read_rgb, rgb_to_tensor, tensor_to_rgb,
    upscale_nearest, write_frame, write_png_atomic,
};
use zoetrope::output::{write_atomic, write_json_atomic, RunDir};

fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 37 % 256) as u8,
            (y * 91 % 256) as u8,
            ((x + y) * 13 % 256) as u8,
        ])
    })
}

#[test]
fn frame_names_are_five_digit_and_parse_back() {
    assert_eq!(frame_file_name(1), "frame_00001.png");
    assert_eq!(frame_file_name(40), "frame_00040.png");
    assert_eq!(frame_file_name(123456), "frame_123456.png");
    assert_eq!(parse_frame_file_name("frame_00040.png"), Some(40));
    assert_eq!(parse_frame_file_name("frame_123456.png"), Some(123456));
    assert_eq!(parse_frame_file_name("frame_40.png"), None);
    assert_eq!(parse_frame_file_name("frame_00040.png.tmp"), None);
    assert_eq!(parse_frame_file_name("snapshot_00040.png"), None);
}

#[test]
fn tensor_to_rgb_rounds_clamps_and_orders_channels() {
    // [3, 2, 3]: channel c, row y, column x.
    let vals: Vec<f32> = vec![
        0.0,
        0.5,
        1.0,
        2.0,
        -1.0,
        f32::NAN, // R
        0.11,
        0.2,
        0.31,
        0.4,
        0.5,
        0.6, // G
        1.0,
        1.0,
        1.0,
        0.0,
        0.0,
        0.0, // B
    ];
    let t = Tensor::from_slice(&vals).view([3, 2, 3]);
    let img = tensor_to_rgb(&t, 1).unwrap();
    assert_eq!(img.dimensions(), (3, 2));
    assert_eq!(img.get_pixel(0, 0), &Rgb([0, 28, 255]));
    assert_eq!(img.get_pixel(1, 0), &Rgb([128, 51, 255]));
    assert_eq!(img.get_pixel(2, 0), &Rgb([255, 79, 255]));
    assert_eq!(img.get_pixel(0, 1), &Rgb([255, 102, 0]), "clamped above 1");
    assert_eq!(img.get_pixel(1, 1), &Rgb([0, 128, 0]), "clamped below 0");
    assert_eq!(img.get_pixel(2, 1), &Rgb([0, 153, 0]), "NaN is 0");
    // A batch of one is accepted too, other shapes are not.
    let same = tensor_to_rgb(&t.unsqueeze(0), 1).unwrap();
    assert_eq!(same, img);
    assert!(tensor_to_rgb(&Tensor::zeros([4, 2, 2], (Kind::Float, Device::Cpu)), 1).is_err());
    assert!(tensor_to_rgb(&Tensor::zeros([2, 3, 2, 2], (Kind::Float, Device::Cpu)), 1).is_err());
}

#[test]
fn pixel_size_is_a_nearest_neighbour_block_upscale() {
    let img = pattern(5, 3);
    let big = upscale_nearest(&img, 4);
    assert_eq!(big.dimensions(), (20, 12));
    for y in 0..12 {
        for x in 0..20 {
            assert_eq!(big.get_pixel(x, y), img.get_pixel(x / 4, y / 4));
        }
    }
    let t = rgb_to_tensor(&img).unwrap();
    assert_eq!(t.size(), [1, 3, 3, 5]);
    assert_eq!(tensor_to_rgb(&t, 4).unwrap(), big);
    assert_eq!(
        tensor_to_rgb(&t, 1).unwrap(),
        img,
        "u8 → tensor → u8 is exact"
    );
}

#[test]
fn png_frames_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(33, 17);
    let path = write_frame(dir.path(), 7, &img).unwrap();
    assert_eq!(path, dir.path().join("frame_00007.png"));
    assert_eq!(read_rgb(&path).unwrap(), img);
    // Only the frame is left in the folder (no temporary files).
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["frame_00007.png"]);
    // Loading at the same size gives back the exact values.
    let t = load_image(&path, 33, 17).unwrap();
    assert_eq!(t.size(), [1, 3, 17, 33]);
    assert_eq!(tensor_to_rgb(&t, 1).unwrap(), img);
}

#[test]
fn load_image_resizes_to_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    // Left half red, right half blue, 40×20, saved as JPEG and PNG.
    let img = RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    });
    let png = dir.path().join("init.png");
    let jpg = dir.path().join("init.jpg");
    img.save(&png).unwrap();
    img.save(&jpg).unwrap();
    for path in [&png, &jpg] {
        let t = load_image(path, 16, 24).unwrap();
        assert_eq!(t.size(), [1, 3, 24, 16]);
        assert_eq!(t.kind(), Kind::Float);
        let px = |c: i64, y: i64, x: i64| t.double_value(&[0, c, y, x]);
        assert!(px(0, 12, 2) > 0.75 && px(2, 12, 2) < 0.2, "left stays red");
        assert!(
            px(2, 12, 13) > 0.75 && px(0, 12, 13) < 0.2,
            "right stays blue"
        );
        let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
    }
}

#[test]
fn unreadable_images_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.png");
    let err = load_image(&missing, 16, 16).unwrap_err();
    assert!(err.message.contains("nope.png"), "{err}");
    let garbage = dir.path().join("garbage.jpg");
    fs::write(&garbage, b"this is not an image").unwrap();
    let err = load_image(&garbage, 16, 16).unwrap_err();
    assert!(err.message.contains("garbage.jpg"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

/// A value whose serialisation fails halfway, like a write that breaks.
struct Exploding;
impl Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("seed", &42)?;
        Err(S::Error::custom("simulated failure"))
    }
}

#[test]
fn atomic_writes_leave_the_old_file_intact_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    write_json_atomic(&path, &serde_json::json!({"seed": 1, "width": 256})).unwrap();
    let before = fs::read_to_string(&path).unwrap();
    assert!(before.contains("\"seed\": 1") && before.ends_with("}\n"));

    let err = write_json_atomic(&path, &Exploding).unwrap_err();
    assert!(err.message.contains("settings.json"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), before);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");

    // A failing target (its folder vanished) is an error naming the file.
    let gone = dir.path().join("gone/frame_00001.png");
    let err = write_png_atomic(&gone, &pattern(4, 4)).unwrap_err();
    assert!(err.message.contains("frame_00001.png"), "{err}");
    assert_eq!(err.exit_code(), 4);

    // A successful write replaces the content.
    write_atomic(&path, b"{}\n").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
}

#[test]
fn run_folders_never_touch_an_earlier_run() {
    let out = tempfile::tempdir().unwrap();
    let first = RunDir::create(out.path(), "city", false).unwrap();
    assert_eq!(first.path, out.path().join("city"));
    assert_eq!(first.video_path(), out.path().join("city/city.mp4"));
    // Still empty: reused.
    assert_eq!(RunDir::create(out.path(), "city", false).unwrap(), first);

    write_frame(&first.path, 1, &pattern(4, 4)).unwrap();
    first
        .write_json("settings.json", &serde_json::json!({"seed": 5}))
        .unwrap();
    let second = RunDir::create(out.path(), "city", false).unwrap();
    assert_eq!(second.path, out.path().join("city_2"));
    assert_eq!(second.name, "city_2");
    assert_eq!(second.video_path(), out.path().join("city_2/city_2.mp4"));
    fs::write(second.path.join("x"), b"").unwrap();
    let third = RunDir::create(out.path(), "city", false).unwrap();
    assert_eq!(third.name, "city_3");
    assert_eq!(
        first.existing_frames().unwrap(),
        [1],
        "the first run is intact"
    );

    // allow_overwrite reuses the folder and changes nothing in it yet; the
    // render removes the earlier run's files when its own are about to come,
    // `first` first, and keeps the user's.
    write_frame(&first.path, 2, &pattern(4, 4)).unwrap();
    for name in [
        "city.mp4",
        "city.mp4.part",
        ".state.json.tmp-1-0",
        "notes.txt",
    ] {
        fs::write(first.path.join(name), b"x").unwrap();
    }
    fs::create_dir(first.path.join("snapshots")).unwrap();
    let again = RunDir::create(out.path(), "city", true).unwrap();
    assert_eq!(again.path, first.path);
    assert_eq!(again.existing_frames().unwrap(), [1, 2]);
    again
        .remove_run_files("settings.json", |name| name == "other.json")
        .unwrap();
    assert!(again.existing_frames().unwrap().is_empty());
    let mut left: Vec<String> = fs::read_dir(&again.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["notes.txt", "snapshots"]);
    assert_eq!(again.frame_path(3), first.path.join("frame_00003.png"));
    again.remove_if_empty();
    assert!(again.path.is_dir(), "not empty: kept");
    let empty = RunDir::create(out.path(), "empty", false).unwrap();
    empty.remove_if_empty();
    assert!(!empty.path.exists());

    // Resume opens an existing folder without changing it.
    let resumed = RunDir::open(&second.path).unwrap();
    assert_eq!(resumed.name, "city_2");
    assert!(RunDir::open(&out.path().join("missing")).is_err());

    for bad in ["", "a/b", "..", " padded "] {
        let err = RunDir::create(out.path(), bad, false).unwrap_err();
        assert!(err.message.contains("file_namespace"), "{err}");
    }
}
