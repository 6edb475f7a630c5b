//! MP4 round trips: encode synthetic frames with Mp4Writer, decode them back
//! with read_mp4 and compare size, rate, metadata and pixels.
#![cfg(feature = "video")]

use std::path::Path;

use image::{Rgb, RgbImage};
use zoetrope::output::frames::write_frame;
use zoetrope::output::video::{read_mp4, write_mp4_from_pngs, Mp4Writer};

/// Smooth, moving content: a horizontal ramp scrolling with `k`, a vertical
/// ramp and a slow sine.
fn frame(w: u32, h: u32, k: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let fx = x as f64 / w as f64;
        let fy = y as f64 / h as f64;
        let r = ((fx + k as f64 * 0.02).fract() * 0.8 + 0.1) * 255.0;
        let g = (fy * 0.8 + 0.1) * 255.0;
        let b = (0.5 + 0.3 * (6.0 * fx + 4.0 * fy + k as f64 * 0.3).sin()) * 255.0;
        Rgb([r.round() as u8, g.round() as u8, b.round() as u8])
    })
}

/// Mean absolute difference per channel value (0–255) over the `w × h`
/// top-left region.
fn mae(a: &RgbImage, b: &RgbImage, w: u32, h: u32) -> f64 {
    let mut sum = 0.0;
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                sum += (a.get_pixel(x, y)[c] as f64 - b.get_pixel(x, y)[c] as f64).abs();
            }
        }
    }
    sum / (w * h * 3) as f64
}

fn encode(path: &Path, w: u32, h: u32, fps: f64, n: u32, comment: &str) -> Vec<RgbImage> {
    let frames: Vec<RgbImage> = (0..n).map(|k| frame(w, h, k)).collect();
    let mut writer = Mp4Writer::create(path, w, h, fps, comment).unwrap();
    for f in &frames {
        writer.push_frame(f).unwrap();
    }
    assert_eq!(writer.frames_written(), n as u64);
    let out = writer.finish().unwrap();
    assert_eq!(out, path);
    frames
}

#[test]
fn even_and_odd_sizes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let comment = "a red fox | sunset:2 || the sea at night:-1:-.9 — ünïcode";
    for (w, h, ew, eh) in [(64u32, 32u32, 64u32, 32u32), (65, 33, 66, 34)] {
        let path = dir.path().join(format!("run_{w}x{h}.mp4"));
        let frames = encode(&path, w, h, 12.0, 12, comment);
        assert!(path.is_file());
        assert!(!dir.path().join(format!("run_{w}x{h}.mp4.part")).exists());

        let video = read_mp4(&path).unwrap();
        assert_eq!((video.width, video.height), (ew, eh), "padded to even");
        assert_eq!(video.frames.len(), 12);
        assert!((video.fps - 12.0).abs() < 1e-9, "fps {}", video.fps);
        assert_eq!(video.comment.as_deref(), Some(comment));
        assert_eq!(video.codec, "h264");
        assert_eq!(video.pixel_format, "yuv420p");
        for (k, (orig, dec)) in frames.iter().zip(&video.frames).enumerate() {
            assert_eq!(dec.dimensions(), (ew, eh));
            let err = mae(orig, dec, w, h);
            assert!(err < 8.0, "{w}×{h} frame {k}: mean abs error {err}/255");
        }
        // The padding duplicates the last column and row.
        if ew > w {
            let dec = &video.frames[5];
            let mut diff = 0.0;
            for y in 0..h {
                for c in 0..3 {
                    diff +=
                        (dec.get_pixel(w, y)[c] as f64 - dec.get_pixel(w - 1, y)[c] as f64).abs();
                }
            }
            assert!(
                diff / ((h * 3) as f64) < 8.0,
                "padding column differs from the last"
            );
        }
    }
}

#[test]
fn frame_order_survives_encoding() {
    // Each frame is a flat grey level; the decoded levels must come back in order.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levels.mp4");
    let levels: Vec<u8> = (0..12).map(|k| 20 + k * 18).collect();
    let mut w = Mp4Writer::create(&path, 32, 16, 12.0, "levels").unwrap();
    for &l in &levels {
        w.push_rgb(&vec![l; 32 * 16 * 3]).unwrap();
    }
    w.finish().unwrap();
    let video = read_mp4(&path).unwrap();
    let got: Vec<f64> = video
        .frames
        .iter()
        .map(|f| f.as_raw().iter().map(|&v| v as f64).sum::<f64>() / f.as_raw().len() as f64)
        .collect();
    assert_eq!(got.len(), levels.len());
    for (g, &l) in got.iter().zip(&levels) {
        assert!((g - l as f64).abs() < 3.0, "level {l} decoded as {g}");
    }
}

#[test]
fn fractional_frame_rate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ntsc.mp4");
    encode(&path, 32, 32, 30000.0 / 1001.0, 6, "");
    let video = read_mp4(&path).unwrap();
    assert!(
        (video.fps - 30000.0 / 1001.0).abs() < 1e-6,
        "fps {}",
        video.fps
    );
    assert_eq!(video.frames.len(), 6);
}

#[test]
fn an_abandoned_video_never_replaces_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scene.mp4");
    encode(&path, 32, 16, 12.0, 4, "good");
    let good = std::fs::read(&path).unwrap();

    // A second run that ends without finish (an error, a panic unwinding).
    {
        let mut w = Mp4Writer::create(&path, 32, 16, 12.0, "partial").unwrap();
        for k in 0..3 {
            w.push_frame(&frame(32, 16, k)).unwrap();
        }
        assert_eq!(w.part_path(), dir.path().join("scene.mp4.part"));
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the good video was touched"
    );
    // The abandoned .part was still closed properly and is readable.
    let part = read_mp4(&dir.path().join("scene.mp4.part")).unwrap();
    assert_eq!(part.frames.len(), 3);
    assert_eq!(part.comment.as_deref(), Some("partial"));
}

#[test]
fn finishing_an_interrupted_render_keeps_the_frames_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interrupted.mp4");
    let mut w = Mp4Writer::create(&path, 48, 24, 12.0, "stopped early").unwrap();
    for k in 0..5 {
        w.push_frame(&frame(48, 24, k)).unwrap();
    }
    // Ctrl-C arrives: the caller finishes the video.
    let closed = w.close_partial().unwrap();
    assert_eq!(read_mp4(&closed).unwrap().frames.len(), 5);

    let mut w = Mp4Writer::create(&path, 48, 24, 12.0, "stopped early").unwrap();
    for k in 0..5 {
        w.push_frame(&frame(48, 24, k)).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(read_mp4(&path).unwrap().frames.len(), 5);
}

#[test]
fn misuse_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp4");
    let mut w = Mp4Writer::create(&path, 32, 16, 12.0, "").unwrap();
    assert!(w.push_frame(&frame(30, 16, 0)).is_err());
    assert!(w.push_rgb(&[0u8; 10]).is_err());
    let err = w.finish().unwrap_err();
    assert!(err.message.contains("no frames"), "{err}");
    assert!(!path.exists() && !dir.path().join("bad.mp4.part").exists());

    assert!(Mp4Writer::create(&path, 0, 16, 12.0, "").is_err());
    assert!(Mp4Writer::create(&path, 32, 16, 0.0, "").is_err());
    assert!(Mp4Writer::create(&path, 32, 16, f64::NAN, "").is_err());
    let missing = dir.path().join("no/such/folder/x.mp4");
    let err = Mp4Writer::create(&missing, 32, 16, 12.0, "").err().unwrap();
    assert!(err.message.contains("x.mp4.part"), "{err}");
    let err = read_mp4(&dir.path().join("absent.mp4")).unwrap_err();
    assert!(err.message.contains("absent.mp4"), "{err}");
}

#[test]
fn a_video_can_be_rebuilt_from_png_frames() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<RgbImage> = (0..5).map(|k| frame(40, 20, k)).collect();
    let paths: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| write_frame(dir.path(), i + 1, f).unwrap())
        .collect();
    let path = dir.path().join("rebuilt.mp4");
    write_mp4_from_pngs(&paths, &path, 12.0, "rebuilt").unwrap();
    let video = read_mp4(&path).unwrap();
    assert_eq!(video.frames.len(), 5);
    for (orig, dec) in frames.iter().zip(&video.frames) {
        assert!(mae(orig, dec, 40, 20) < 8.0);
    }
    // A frame of another size is refused by name.
    let odd = write_frame(dir.path(), 6, &frame(20, 20, 0)).unwrap();
    let mut with_odd = paths.clone();
    with_odd.push(odd);
    let err = write_mp4_from_pngs(&with_odd, &dir.path().join("x.mp4"), 12.0, "").unwrap_err();
    assert!(err.message.contains("frame_00006.png"), "{err}");
    assert!(write_mp4_from_pngs(&[], &dir.path().join("y.mp4"), 12.0, "").is_err());
}
