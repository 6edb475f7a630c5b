//! Prompt masks (docs/design.md §2a): the grammar with its caret errors, each
//! mask's per-crop weight factors and stop floors on hand-worked crops, the
//! masked loss's value and gradient, and renders through the binary.

use std::f64::consts::PI;
use tch::{Kind, Tensor};
use zoetrope::guidance::cutouts::Crop;
use zoetrope::guidance::loss::{table_row, weighted_table, weighted_table_masked, WeightStop};
use zoetrope::guidance::mask::{
    geometric_floors, mask_rows, semantic_floors, CropPlace, ImageMask, MaskTarget,
};
use zoetrope::scene::{Prompt, PromptMask, Scene};
use zoetrope::ErrorKind;

fn vals(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close_all(got: &[f64], want: &[f64], tol: f64) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tol)
}

/// Three crops of a 100 × 50 image:
/// A at (0, 0) side 20: corner (0, 0), side (0.2, 0.4), centre (0.1, 0.2);
/// B at (60, 10) side 40: corner (0.6, 0.2), side (0.4, 0.8), centre (0.8, 0.6);
/// C at (40, −5) side 20: corner (0.4, −0.1), side (0.2, 0.4), centre (0.5, 0.1).
/// Shorter sides: 0.2, 0.4, 0.2.
fn places() -> Vec<CropPlace> {
    [
        Crop {
            x: 0,
            y: 0,
            size: 20,
        },
        Crop {
            x: 60,
            y: 10,
            size: 40,
        },
        Crop {
            x: 40,
            y: -5,
            size: 20,
        },
    ]
    .iter()
    .map(|c| CropPlace::of(c, 100, 50))
    .collect()
}

#[test]
fn crop_places_are_pyttis_fractions() {
    let p = places();
    assert_eq!(
        p[1],
        CropPlace {
            x: 0.6,
            y: 0.2,
            w: 0.4,
            h: 0.8
        }
    );
    assert_eq!((p[2].x, p[2].y), (0.4, -0.1));
}

#[test]
fn geometric_floors_on_hand_worked_crops() {
    let p = places();
    let floors = |m: PromptMask, th: f64| geometric_floors(&m, &p, th);
    // 1 leaves the crop out, 0 keeps it. C's centre is exactly at 0.5 on x:
    // both `l` and `r` keep it (pytti compares strictly).
    assert_eq!(floors(PromptMask::Left, 0.5), [0.0, 1.0, 0.0]);
    assert_eq!(floors(PromptMask::Right, 0.5), [1.0, 0.0, 0.0]);
    assert_eq!(floors(PromptMask::Up, 0.5), [0.0, 1.0, 0.0]);
    assert_eq!(floors(PromptMask::Down, 0.5), [1.0, 0.0, 1.0]);
    assert_eq!(floors(PromptMask::Near, 0.3), [1.0, 0.0, 1.0]);
    assert_eq!(floors(PromptMask::Far, 0.3), [0.0, 1.0, 0.0]);
    assert_eq!(floors(PromptMask::Far, 0.2), [0.0, 1.0, 0.0]);
    assert_eq!(floors(PromptMask::Near, 0.2), [0.0, 0.0, 0.0]);
    // pytti's default threshold 0.5000873264 puts C (centre 0.5) on the left.
    let th = PromptMask::DEFAULT_THRESHOLD;
    assert_eq!(floors(PromptMask::Left, th), [0.0, 1.0, 0.0]);
    assert_eq!(floors(PromptMask::Right, th), [1.0, 0.0, 1.0]);
    // A threshold that moves over time changes the answer.
    assert_eq!(floors(PromptMask::Down, 0.05), [0.0, 0.0, 0.0]);
    assert_eq!(floors(PromptMask::Down, 0.7), [1.0, 1.0, 1.0]);
    assert!(floors(PromptMask::All, 0.5)
        .iter()
        .all(|f| *f == f32::NEG_INFINITY));
}

/// A 4 × 2 mask: row 0 = 1 1 0 0, row 1 = 1 0 0 0; mean 3/8.
fn quarter_mask(inverted: bool) -> ImageMask {
    let v: Vec<f32> = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        .iter()
        .map(|&x| if inverted { 1.0 - x } else { x })
        .collect();
    ImageMask::new(4, 2, v).unwrap()
}

#[test]
fn image_mask_factors_on_hand_worked_crops() {
    // Crops of a 100 × 50 image:
    // P (0, 0) side 50: columns [0, 2), rows [0, floor(1·2) = 2 → clamped to 1):
    //   row 0, columns 0–1 = 1, 1 → mean 1.
    // Q (50, 0) side 50: columns [2, 4 → 3), rows [0, 1): one pixel, 0.
    // R (−10, 0) side 20: columns [floor(−0.4) → 0, floor(0.4) = 0): empty → 0.
    // S (0, 0) side 25: columns [0, 1), rows [0, 1): 1.
    let p: Vec<CropPlace> = [
        Crop {
            x: 0,
            y: 0,
            size: 50,
        },
        Crop {
            x: 50,
            y: 0,
            size: 50,
        },
        Crop {
            x: -10,
            y: 0,
            size: 20,
        },
        Crop {
            x: 0,
            y: 0,
            size: 25,
        },
    ]
    .iter()
    .map(|c| CropPlace::of(c, 100, 50))
    .collect();
    let root = (3.0f64 / 8.0).sqrt();
    let got: Vec<f64> = quarter_mask(false)
        .factors(&p)
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert!(
        close_all(&got, &[1.0 / root, 0.0, 0.0, 1.0 / root], 1e-6),
        "{got:?}"
    );
    // Inverted: row 0 = 0 0 1 1, mean 5/8; P sees 0 0, Q sees 1.
    let root = (5.0f64 / 8.0).sqrt();
    let got: Vec<f64> = quarter_mask(true)
        .factors(&p)
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert!(
        close_all(&got, &[0.0, 1.0 / root, 0.0, 0.0], 1e-6),
        "{got:?}"
    );
    // A black mask turns the prompt off (pytti: mean under 0.001).
    let black = ImageMask::new(4, 2, vec![0.0; 8]).unwrap();
    assert_eq!(black.factors(&p), vec![0.0; 4]);
    assert!(ImageMask::new(4, 2, vec![0.0; 7]).is_err());
}

#[test]
fn image_masks_read_as_pytti_grey_and_invert() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("m.png");
    // Left column pure red, right column white: L = 76/255 and 1.
    let red_white = |rows| {
        image::RgbImage::from_fn(2, rows, |x, _| {
            if x == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        })
    };
    red_white(1).save(&path).unwrap();
    let whole = [CropPlace {
        x: 0.0,
        y: 0.0,
        w: 0.5,
        h: 1.0,
    }];
    // A one-row mask gives every crop an empty window (pytti clamps the
    // window's end into the mask: rows [0, floor(1·1) = 1 → 0)), so 0.
    assert_eq!(
        ImageMask::load(&path, false, "m").unwrap().factors(&whole),
        [0.0]
    );
    red_white(2).save(&path).unwrap();
    // Two rows: the crop's window is the top-left pixel, red.
    let red = 76.0f64 / 255.0;
    let mean = (red + 1.0) / 2.0;
    let got = ImageMask::load(&path, false, "m").unwrap().factors(&whole)[0] as f64;
    assert!((got - red / mean.sqrt()).abs() < 1e-6, "{got}");
    let inv_mean = ((1.0 - red) + 0.0) / 2.0;
    let got = ImageMask::load(&path, true, "m").unwrap().factors(&whole)[0] as f64;
    assert!((got - (1.0 - red) / inv_mean.sqrt()).abs() < 1e-6, "{got}");
    let e = ImageMask::load(&t.path().join("none.png"), false, "scene 1").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(
        e.message.contains("none.png") && e.message.contains("scene 1"),
        "{e}"
    );
}

#[test]
fn mask_rows_lay_out_factors_then_floors() {
    let p = places();
    let quarter = MaskTarget::Image(quarter_mask(false));
    let left = MaskTarget::Geometric(PromptMask::Left);
    let semantic = MaskTarget::Semantic(vec![]);
    let masks = [
        (&MaskTarget::All, None),
        (&left, Some(0.5)),
        (&quarter, None),
        (&semantic, None),
        (&semantic, Some(0.5)),
    ];
    let rows = mask_rows(&masks, &p);
    assert_eq!(rows.len(), 2 * 5 * 3);
    let (factors, floors) = rows.split_at(15);
    assert_eq!(&factors[0..6], &[1.0; 6]);
    assert_eq!(&factors[6..9], quarter_mask(false).factors(&p).as_slice());
    assert_eq!(&factors[9..15], &[1.0; 6]);
    assert!(floors[0..3].iter().all(|f| *f == f32::NEG_INFINITY));
    assert_eq!(&floors[3..6], &[0.0, 1.0, 0.0]);
    assert!(floors[6..9].iter().all(|f| *f == f32::NEG_INFINITY));
    assert!(floors[9..12].iter().all(|f| f.is_nan()));
    assert_eq!(&floors[12..15], &[0.85f32; 3]);
}

#[test]
fn semantic_floors_are_the_distance_to_the_mask_text() {
    let embeds = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0]).view([3, 2]);
    let text = Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]);
    let d = [0.0, PI * PI / 8.0, PI * PI / 2.0];
    let nan = Tensor::from_slice(&[f32::NAN; 3]);
    let got =
        vals(&semantic_floors(&[embeds.shallow_clone()], &[text.shallow_clone()], &nan).unwrap());
    assert!(close_all(&got, &d, 1e-5), "{got:?}");
    let at = Tensor::from_slice(&[1.0f32; 3]);
    let got = vals(&semantic_floors(&[embeds], &[text], &at).unwrap());
    assert_eq!(got, [0.0, 1.0, 1.0]);
}

/// Value and gradient (with respect to the distances) of one masked row.
fn masked(d: &[f32], ws: WeightStop, factors: &[f32], floors: &[f32]) -> (f64, Vec<f64>) {
    let n = d.len() as i64;
    let raw = Tensor::from_slice(d).view([1, n]).set_requires_grad(true);
    let table = Tensor::from_slice(&table_row(1.0, ws)).view([1, 3]);
    let loss = weighted_table_masked(
        &raw,
        &table,
        &Tensor::from_slice(factors).view([1, n]),
        &Tensor::from_slice(floors).view([1, n]),
    )
    .unwrap();
    loss.backward();
    (loss.double_value(&[]), vals(&raw.grad()))
}

#[test]
fn masked_loss_value_and_gradient_by_hand() {
    let d = [0.8f32, 0.9, 1.2];
    let inf = f32::NEG_INFINITY;
    // A geometric mask leaving out crop 0 (floor 1): it still counts in the
    // value (2 · mean d) but pulls no more.
    let (v, g) = masked(&d, WeightStop::new(2.0, None), &[1.0; 3], &[1.0, 0.0, inf]);
    assert!((v - 2.0 * 2.9 / 3.0).abs() < 1e-6, "{v}");
    assert!(close_all(&g, &[0.0, 2.0 / 3.0, 2.0 / 3.0], 1e-6), "{g:?}");
    // Negative: the floors drop by one (floor 1 → 0, 0 → −1): crop 0 is not
    // pushed at all (−0.8 ≤ 0), crop 1 is (−0.9 > −1), crop 2 too.
    let (v, g) = masked(&d, WeightStop::new(-1.0, None), &[1.0; 3], &[1.0, 0.0, inf]);
    assert!((v + 2.9 / 3.0).abs() < 1e-6, "{v}");
    assert!(close_all(&g, &[0.0, -1.0 / 3.0, -1.0 / 3.0], 1e-6), "{g:?}");
    // …and the prompt's own stop still applies: −1.2 ≤ −1.
    let (_, g) = masked(
        &d,
        WeightStop::new(-1.0, Some(-1.0)),
        &[1.0; 3],
        &[1.0, 0.0, inf],
    );
    assert!(close_all(&g, &[0.0, -1.0 / 3.0, 0.0], 1e-6), "{g:?}");
    // Image-mask factors scale each crop's weight, value and gradient.
    let (v, g) = masked(&d, WeightStop::new(1.0, None), &[0.5, 2.0, 0.0], &[inf; 3]);
    assert!((v - (0.4 + 1.8) / 3.0).abs() < 1e-6, "{v}");
    assert!(close_all(&g, &[0.5 / 3.0, 2.0 / 3.0, 0.0], 1e-6), "{g:?}");
    // A semantic floor per crop: crop 1's distance 0.9 is under its floor.
    let (_, g) = masked(&d, WeightStop::new(1.0, None), &[1.0; 3], &[0.5, 0.95, 1.0]);
    assert!(close_all(&g, &[1.0 / 3.0, 0.0, 1.0 / 3.0], 1e-6), "{g:?}");
}

/// pytti's masked prompt loss, re-stated in torch by
/// scripts/reference/gen_mask_fixtures.py: every mask kind on random
/// embeddings and crops, value and gradient against the reference's.
#[test]
fn masked_loss_matches_the_python_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/masks/masked_loss.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let (n, d) = (doc["n"].as_i64().unwrap(), doc["d"].as_i64().unwrap());
    let embeds = Tensor::from_slice(&floats(&doc["embeds"])).view([n, d]);
    let target = Tensor::from_slice(&floats(&doc["target"]));
    let text = Tensor::from_slice(&floats(&doc["text"])).view([1, d]);
    let (w, h) = (
        doc["width"].as_i64().unwrap(),
        doc["height"].as_i64().unwrap(),
    );
    let places: Vec<CropPlace> = doc["crops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c: Vec<i64> = c
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            CropPlace::of(
                &Crop {
                    x: c[0],
                    y: c[1],
                    size: c[2],
                },
                w,
                h,
            )
        })
        .collect();
    let grey = floats(&doc["mask"]);
    let (mw, mh) = (
        doc["mask_width"].as_u64().unwrap() as usize,
        doc["mask_height"].as_u64().unwrap() as usize,
    );
    for case in doc["cases"].as_array().unwrap() {
        let kind = case["mask"].as_str().unwrap();
        let mask = match kind {
            "a" => MaskTarget::All,
            "image" => MaskTarget::Image(ImageMask::new(mw, mh, grey.clone()).unwrap()),
            "-image" => MaskTarget::Image(
                ImageMask::new(mw, mh, grey.iter().map(|v| 1.0 - v).collect()).unwrap(),
            ),
            "semantic" => MaskTarget::Semantic(vec![text.shallow_clone()]),
            code => MaskTarget::Geometric(Prompt::parse(&format!("x:1_{code}")).unwrap().mask),
        };
        let ws = WeightStop::new(case["weight"].as_f64().unwrap(), case["stop"].as_f64());
        let rows = mask_rows(&[(&mask, case["threshold"].as_f64())], &places);
        let masks = Tensor::from_slice(&rows).view([2, 1, n]);
        let x = embeds.copy().set_requires_grad(true);
        let floors = match &mask {
            MaskTarget::Semantic(t) => {
                semantic_floors(&[x.shallow_clone()], t, &masks.get(1).get(0))
                    .unwrap()
                    .view([1, n])
            }
            _ => masks.get(1),
        };
        let dist = zoetrope::guidance::loss::spherical_distance(&x, &target)
            .unwrap()
            .view([1, n]);
        let table = Tensor::from_slice(&table_row(1.0, ws)).view([1, 3]);
        let loss = weighted_table_masked(&dist, &table, &masks.get(0), &floors).unwrap();
        loss.backward();
        let want = case["value"].as_f64().unwrap();
        let got = loss.double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{kind}: value {got} vs {want}");
        let want: Vec<f64> = case["grad"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = vals(&x.grad());
        assert!(
            close_all(&got, &want, 1e-5),
            "{kind}: gradient {got:?} vs {want:?}"
        );
    }
}

#[test]
fn unmasked_rows_equal_the_plain_table_bit_for_bit() {
    let raw = Tensor::rand([3, 7], (Kind::Float, tch::Device::Cpu));
    let rows: Vec<f32> = [
        WeightStop::new(1.5, None),
        WeightStop::new(-0.7, Some(-0.9)),
        WeightStop::new(0.0, None),
    ]
    .iter()
    .flat_map(|ws| table_row(0.6, *ws))
    .collect();
    let table = Tensor::from_slice(&rows).view([3, 3]);
    let plain = raw.set_requires_grad(true);
    let a = weighted_table(&plain, &table).unwrap();
    a.backward();
    let ga = plain.grad().copy();
    let masked_raw = raw.detach().set_requires_grad(true);
    let b = weighted_table_masked(
        &masked_raw,
        &table,
        &Tensor::ones([3, 7], (Kind::Float, tch::Device::Cpu)),
        &Tensor::full([3, 7], f64::NEG_INFINITY, (Kind::Float, tch::Device::Cpu)),
    )
    .unwrap();
    b.backward();
    assert_eq!(a.double_value(&[]).to_bits(), b.double_value(&[]).to_bits());
    assert!(ga.equal(&masked_raw.grad()));
}

#[test]
fn grammar_reads_every_mask_form() {
    let p = Prompt::parse("a sunset:2_u:0.8").unwrap();
    assert_eq!(p.mask, PromptMask::Up);
    assert!(p.mask_threshold.is_none());
    assert_eq!(p.weight.eval(0.0, 0.0), 2.0);
    assert_eq!(p.stop_at(0.0, 0.0), 0.8);
    assert_eq!(p.mask_threshold_at(0.0, 0.0), PromptMask::DEFAULT_THRESHOLD);
    for (code, mask) in [
        ("a", PromptMask::All),
        ("l", PromptMask::Left),
        ("r", PromptMask::Right),
        ("u", PromptMask::Up),
        ("d", PromptMask::Down),
        ("n", PromptMask::Near),
        ("f", PromptMask::Far),
    ] {
        let p = Prompt::parse(&format!("x:1_{code}_0.25")).unwrap();
        assert_eq!(p.mask, mask);
        assert_eq!(p.mask_threshold_at(0.0, 0.0), 0.25);
        assert_eq!(p.mask.code(), code);
    }
    let p = Prompt::parse("x:-1_[masks/a_b:c.png]_0.3:-.9").unwrap();
    assert_eq!(
        p.mask,
        PromptMask::Image {
            path: "masks/a_b:c.png".into(),
            inverted: false
        }
    );
    assert_eq!(p.weight.eval(0.0, 0.0), -1.0);
    let p = Prompt::parse("x:1_[-m.png]").unwrap();
    assert_eq!(
        p.mask,
        PromptMask::Image {
            path: "m.png".into(),
            inverted: true
        }
    );
    assert_eq!(p.mask.code(), "[-m.png]");
    let p = Prompt::parse("x:1_blue sky_0.5*(1 + sin(t))").unwrap();
    assert_eq!(p.mask, PromptMask::Semantic("blue sky".into()));
    assert_eq!(p.mask_threshold_at(0.0, 0.0), 0.5);
    // No weight before the mask keeps the default weight.
    let p = Prompt::parse("x:_l").unwrap();
    assert_eq!((p.weight.eval(0.0, 0.0), p.mask), (1.0, PromptMask::Left));
    // `_` inside an image prompt's brackets is the path's.
    let p = Prompt::parse("[my_image.png]:1_r").unwrap();
    assert_eq!(p.mask, PromptMask::Right);
}

fn caret_at(e: &str) -> usize {
    e.lines().nth(2).unwrap().find('^').unwrap() - 4 + 1
}

#[test]
fn grammar_errors_mark_the_mask_and_threshold() {
    let e = Prompt::parse("cat:1_l_0.3x:-.9").unwrap_err();
    assert!(e.contains("mask threshold `0.3x`"), "{e}");
    assert_eq!(caret_at(&e), 12, "{e}");
    let e = Prompt::parse("cat:1__0.3").unwrap_err();
    assert!(e.contains("mask after `_` is empty"), "{e}");
    assert_eq!(caret_at(&e), 7, "{e}");
    let e = Prompt::parse("cat:1_l_").unwrap_err();
    assert!(e.contains("threshold after `_` is empty"), "{e}");
    let e = Prompt::parse("cat:1_l_2_3").unwrap_err();
    assert!(e.contains("too many `_`"), "{e}");
    assert_eq!(caret_at(&e), 10, "{e}");
    let e = Prompt::parse("cat:1_[]").unwrap_err();
    assert!(e.contains("names no file"), "{e}");
    let e = Prompt::parse("cat:1_[walk.mp4]").unwrap_err();
    assert!(e.contains("video masks"), "{e}");
    assert_eq!(caret_at(&e), 7, "{e}");
    // The weight's own error still points into the weight.
    let e = Prompt::parse("cat:2*_l").unwrap_err();
    assert!(e.contains("weight `2*`"), "{e}");
    // Through a scene file: the file, line and column of `scenes`, the scene.
    let e = Scene::from_str("scenes = \"a || b:1_l_oops\"\nseed = 1", "dir/s.toml")
        .expect_err("bad threshold");
    assert_eq!(e.kind, ErrorKind::Input);
    assert!(
        e.message.contains("dir/s.toml")
            && e.message.contains("scene 2")
            && e.message.contains("oops"),
        "{e}"
    );
}

#[test]
fn thresholds_are_checked_and_shown_by_plan() {
    let s = Scene::from_str(
        "scenes = \"a:1_l_1/(t - 1) | b:1_[m.png]\"\nseed = 1\nsteps_per_scene = 100\nsteps_per_frame = 50\nframes_per_second = 1",
        "dir/s.toml",
    )
    .unwrap();
    // The mask path is resolved against the scene's folder.
    assert!(
        matches!(&s.prompts[0][1].mask, PromptMask::Image { path, inverted: false }
            if path.is_absolute() && path.ends_with("dir/m.png")),
        "{:?}",
        s.prompts[0][1].mask
    );
    let tl = zoetrope::schedule::Timeline::new(&s).unwrap();
    let e = tl
        .check_values(&s)
        .expect_err("1/(t − 1) is infinite at t = 1");
    assert!(
        e.message.contains("mask threshold") && e.message.contains("frame 2"),
        "{e}"
    );
    let plan = tl.frame_plan(1);
    assert_eq!(plan.prompts[0].mask, "l");
    assert_eq!(plan.prompts[0].mask_threshold, Some(-1.0));
    assert!(
        plan.prompts[1].mask.ends_with("dir/m.png]"),
        "{}",
        plan.prompts[1].mask
    );
    assert_eq!(plan.prompts[1].mask_threshold, None);
    // A missing mask file is refused before any model loads.
    let e = s.check_files().expect_err("no dir/m.png");
    assert!(
        e.message.contains("m.png") && e.message.contains("mask"),
        "{e}"
    );
}

/// Renders through the binary on the tiny models (`weights tiny`).
#[cfg(feature = "video")]
mod through_the_binary {
    use crate::support::{frames_of, render_ok, run_tiny as run, stderr, write_scene};
    use std::path::Path;

    /// 64 × 32, 2 frames of 4 steps; `{scenes}` is replaced.
    const BASE: &str = r#"
scenes = "{scenes}"
perceptors = ["tiny-clip"]
vqgan_model = "tiny-vqgan"
width = 64
height = 32
steps_per_scene = 8
steps_per_frame = 4
cutouts = 6
cut_pow = 1
seed = 7
"#;

    /// Writes the masks (left half white; all black) and a scene; renders it.
    fn render(dir: &Path, name: &str, scenes: &str) -> Vec<Vec<u8>> {
        image::RgbImage::from_fn(64, 32, |x, _| image::Rgb([if x < 32 { 255 } else { 0 }; 3]))
            .save(dir.join("mask.png"))
            .unwrap();
        image::RgbImage::new(8, 8)
            .save(dir.join("black.png"))
            .unwrap();
        let scene = write_scene(
            dir,
            &format!("{name}.toml"),
            &BASE.replace("{scenes}", scenes),
        );
        let out = dir.join("out");
        render_ok(&scene, &out);
        frames_of(&out.join(name), 2)
    }

    const EVERY_MASK: &str = "a lighthouse:1_l | the sea:1_r_0.3 | sky:1_u | rocks:0.5_d | fog:1_n_0.4 | gulls:1_f | boats:1_[mask.png] | haze:-0.5_[-mask.png]:-0.9 | red:1_a sunset | blue:1_water_0.2+0.1*t";

    #[test]
    fn every_mask_kind_renders_deterministically_and_matters() {
        let t = tempfile::tempdir().unwrap();
        let a = render(t.path(), "masked", EVERY_MASK);
        let b = render(t.path(), "masked_again", EVERY_MASK);
        assert_eq!(a, b, "the same masked scene renders the same frames");
        let unmasked = "a lighthouse | the sea | sky | rocks:0.5 | fog | gulls | boats | haze:-0.5:-0.9 | red | blue";
        let c = render(t.path(), "unmasked", unmasked);
        assert_ne!(a, c, "the masks change the render");
        // `plan` shows each mask, and a threshold that varies per frame.
        let scene = t.path().join("masked.toml");
        let o = run(&["plan", scene.to_str().unwrap(), "--format", "json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let prompts = |frame: usize| {
            doc["timeline"][frame]["prompts"]
                .as_array()
                .unwrap()
                .clone()
        };
        let masks: Vec<String> = prompts(0)
            .iter()
            .map(|p| p["mask"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(masks[..6], ["l", "r", "u", "d", "n", "f"]);
        assert!(
            masks[6].ends_with("mask.png]") && masks[7].contains("[-"),
            "{masks:?}"
        );
        assert_eq!(masks[8..], ["a sunset", "water"]);
        assert_eq!(prompts(0)[1]["mask_threshold"], 0.3);
        assert!(prompts(0)[0]["mask_threshold"].is_null());
        let th = |f: usize| prompts(f)[9]["mask_threshold"].as_f64().unwrap();
        assert!(th(1) > th(0), "{} {}", th(0), th(1));
        let table = run(&["plan", scene.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(
            text.contains("(mask l)") && text.contains("(mask r at 0.300)"),
            "{text}"
        );
    }

    #[test]
    fn a_black_image_mask_is_weight_zero_bit_for_bit() {
        let t = tempfile::tempdir().unwrap();
        let masked = render(t.path(), "black", "a lighthouse | the sea:1_[black.png]");
        let off = render(t.path(), "off", "a lighthouse | the sea:0");
        assert_eq!(masked, off);
    }

    #[test]
    fn mask_errors_are_input_errors_through_the_binary() {
        let t = tempfile::tempdir().unwrap();
        for (scenes, wants) in [
            ("a:1_[nowhere.png]", vec!["nowhere.png", "mask"]),
            ("a:1_l_0.3x", vec!["mask threshold", "^"]),
            ("a:1_[walk.mp4]", vec!["video masks", "^"]),
        ] {
            let scene = write_scene(t.path(), "bad.toml", &BASE.replace("{scenes}", scenes));
            let out = t.path().join("out");
            let o = run(&[
                "render",
                scene.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "-q",
            ]);
            assert_eq!(o.status.code(), Some(2), "{scenes}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains("bad.toml"), "{err}");
            for w in wants {
                assert!(err.contains(w), "{scenes}: wants {w}: {err}");
            }
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}
