//! Pins the units and directions of the 2D warp (docs/design.md §5) with synthetic
//! images whose feature positions are known.

use crate::support::max_abs_diff;
use tch::{Device, Kind, Tensor};
use zoetrope::render::warp::{warp, warp_latent, InfillMode, Motion, SamplingMode};
use zoetrope::rng::Rng;

/// A `[1, 1, H, W]` image whose pixel `(i, j)` is `f(i + ½, j + ½)`.
fn image(h: i64, w: i64, f: impl Fn(f64, f64) -> f64) -> Tensor {
    let mut v = Vec::with_capacity((h * w) as usize);
    for j in 0..h {
        for i in 0..w {
            v.push(f(i as f64 + 0.5, j as f64 + 0.5) as f32);
        }
    }
    Tensor::from_slice(&v).view([1, 1, h, w])
}

fn gaussian(x0: f64, y0: f64, sigma: f64) -> impl Fn(f64, f64) -> f64 {
    move |x, y| (-((x - x0).powi(2) + (y - y0).powi(2)) / (2.0 * sigma * sigma)).exp()
}

/// Intensity centroid `(x, y)` of a `[1, 1, H, W]` image, in pixel coordinates.
fn centroid(t: &Tensor) -> (f64, f64) {
    let t = t.to_kind(Kind::Double).squeeze();
    let (h, w) = (t.size()[0], t.size()[1]);
    let xs = Tensor::arange(w, (Kind::Double, Device::Cpu)) + 0.5;
    let ys = (Tensor::arange(h, (Kind::Double, Device::Cpu)) + 0.5).view([h, 1]);
    let total = t.sum(Kind::Double).double_value(&[]);
    let cx = (&t * &xs).sum(Kind::Double).double_value(&[]) / total;
    let cy = (&t * &ys).sum(Kind::Double).double_value(&[]) / total;
    (cx, cy)
}

/// Centroid of the part of a 1-row-high profile between columns `a..b`.
fn centroid_x_between(t: &Tensor, a: i64, b: i64) -> f64 {
    let part = t.narrow(3, a, b - a);
    centroid(&part).0 + a as f64
}

fn mv() -> Motion {
    Motion::default()
}

/// Where each output pixel of a `h × w` frame samples the input, measured by
/// warping images whose values are their own x and y coordinates: bilinear
/// interpolation reproduces linear functions exactly, so inside the frame the
/// output values are the source coordinates.
fn measured_source(m: &Motion, h: i64, w: i64) -> (Tensor, Tensor) {
    let xs = image(h, w, |x, _| x);
    let ys = image(h, w, |_, y| y);
    let both = Tensor::cat(&[xs, ys], 1);
    let out = warp(&both, m, SamplingMode::Bilinear, InfillMode::Smear).unwrap();
    (out.get(0).get(0), out.get(0).get(1))
}

/// Checks the measured source coordinates against `want(x, y) -> (sx, sy)`
/// wherever the source lies inside the frame (away from the smeared border).
fn check_source(m: &Motion, h: i64, w: i64, want: impl Fn(f64, f64) -> (f64, f64)) -> usize {
    let (sx, sy) = measured_source(m, h, w);
    let (sx, sy) = (
        Vec::<f32>::try_from(sx.flatten(0, -1)).unwrap(),
        Vec::<f32>::try_from(sy.flatten(0, -1)).unwrap(),
    );
    let mut checked = 0;
    for j in 0..h {
        for i in 0..w {
            let (x, y) = (i as f64 + 0.5, j as f64 + 0.5);
            let (ex, ey) = want(x, y);
            if ex < 0.5 || ex > w as f64 - 0.5 || ey < 0.5 || ey > h as f64 - 0.5 {
                continue;
            }
            let k = (j * w + i) as usize;
            assert!(
                (sx[k] as f64 - ex).abs() < 2e-4 && (sy[k] as f64 - ey).abs() < 2e-4,
                "{m:?}: output ({x}, {y}) samples ({}, {}), want ({ex}, {ey})",
                sx[k],
                sy[k]
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn zoom_x_magnifies_by_w_over_w_minus_z() {
    // Exact units: output x samples 128 + (x − 128)·(W − z)/W.
    for z in [3.0, -3.0, 128.0] {
        let m = Motion {
            zoom_x_2d: z,
            ..mv()
        };
        let n = check_source(&m, 4, 256, |x, y| {
            (128.0 + (x - 128.0) * (256.0 - z) / 256.0, y)
        });
        assert!(n >= 4 * 120, "too few pixels checked: {n}");
    }
    // A visible feature: two stripes 200 px apart about the centre end up
    // 200·256/253 apart after zoom 3 (256/253 and the plausible mistake
    // 259/256 differ by 0.028 px here; bicubic's centroid is less exact).
    let img = image(8, 256, |x, _| {
        gaussian(28.0, 0.0, 6.0)(x, 0.0) + gaussian(228.0, 0.0, 6.0)(x, 0.0)
    });
    for (z, mag) in [(3.0, 256.0 / 253.0), (-3.0, 256.0 / 259.0)] {
        for (mode, tol) in [(SamplingMode::Bilinear, 0.03), (SamplingMode::Bicubic, 0.1)] {
            let out = warp(
                &img,
                &Motion {
                    zoom_x_2d: z,
                    ..mv()
                },
                mode,
                InfillMode::Black,
            )
            .unwrap();
            let left = centroid_x_between(&out, 0, 128);
            let right = centroid_x_between(&out, 128, 256);
            let (sep, want) = (right - left, 200.0 * mag);
            assert!(
                (sep - want).abs() < tol,
                "zoom {z} {mode}: separation {sep}, want {want}"
            );
        }
    }
}

#[test]
fn zoom_y_magnifies_by_h_over_h_minus_z() {
    let m = Motion {
        zoom_y_2d: 3.0,
        ..mv()
    };
    check_source(&m, 128, 8, |x, y| (x, 64.0 + (y - 64.0) * 125.0 / 128.0));
    // One horizontal stripe 40 px below the centre of a 128-high frame.
    let img = image(128, 8, |_, y| gaussian(0.0, 104.0, 6.0)(0.0, y));
    let out = warp(&img, &m, SamplingMode::Bilinear, InfillMode::Black).unwrap();
    let (cx, cy) = centroid(&out);
    let want = 64.0 + 40.0 * 128.0 / 125.0;
    assert!((cy - want).abs() < 0.02, "centroid y {cy}, want {want}");
    assert!((cx - 4.0).abs() < 1e-6, "x unchanged");
}

#[test]
fn translate_x_moves_content_right_and_translate_y_moves_it_up() {
    let col = image(16, 32, |x, _| if x == 10.5 { 1.0 } else { 0.0 });
    let row = image(16, 32, |_, y| if y == 8.5 { 1.0 } else { 0.0 });
    for mode in SamplingMode::ALL {
        let out = warp(
            &col,
            &Motion {
                translate_x: 5.0,
                ..mv()
            },
            mode,
            InfillMode::Black,
        )
        .unwrap();
        let want = image(16, 32, |x, _| if x == 15.5 { 1.0 } else { 0.0 });
        assert!(
            max_abs_diff(&out, &want) < 1e-4,
            "{mode}: column not at x=15"
        );

        let out = warp(
            &row,
            &Motion {
                translate_y: 3.0,
                ..mv()
            },
            mode,
            InfillMode::Black,
        )
        .unwrap();
        let want = image(16, 32, |_, y| if y == 5.5 { 1.0 } else { 0.0 });
        assert!(
            max_abs_diff(&out, &want) < 1e-4,
            "{mode}: row not at y=5 (up)"
        );
    }
    // Sub-pixel translation moves the centroid by exactly d.
    let img = image(8, 64, |x, _| gaussian(30.0, 0.0, 5.0)(x, 0.0));
    let out = warp(
        &img,
        &Motion {
            translate_x: 2.25,
            translate_y: 0.0,
            ..mv()
        },
        SamplingMode::Bilinear,
        InfillMode::Black,
    )
    .unwrap();
    let cx = centroid(&out).0;
    assert!((cx - 32.25).abs() < 1e-4, "centroid {cx}");
    check_source(
        &Motion {
            translate_x: 2.25,
            translate_y: -1.5,
            ..mv()
        },
        16,
        32,
        |x, y| (x - 2.25, y - 1.5),
    );
}

#[test]
fn rotate_is_counter_clockwise_on_screen() {
    // Pixel (23, 15) of a 32×32 frame: 7.5 px right of the centre (16, 16),
    // 0.5 px above it. +90° moves it to 7.5 px above, 0.5 px left: (15, 8).
    let dot = image(
        32,
        32,
        |x, y| if x == 23.5 && y == 15.5 { 1.0 } else { 0.0 },
    );
    let out = warp(
        &dot,
        &Motion {
            rotate_2d: 90.0,
            ..mv()
        },
        SamplingMode::Nearest,
        InfillMode::Black,
    )
    .unwrap();
    let want = image(32, 32, |x, y| if x == 15.5 && y == 8.5 { 1.0 } else { 0.0 });
    assert!(
        max_abs_diff(&out, &want) < 1e-6,
        "right of centre must move up"
    );

    // A small angle: a bump right of centre moves up along the circle.
    let img = image(64, 64, gaussian(52.0, 32.0, 2.0));
    let out = warp(
        &img,
        &Motion {
            rotate_2d: 10.0,
            ..mv()
        },
        SamplingMode::Bicubic,
        InfillMode::Black,
    )
    .unwrap();
    let (cx, cy) = centroid(&out);
    let a = 10f64.to_radians();
    assert!((cx - (32.0 + 20.0 * a.cos())).abs() < 0.01, "cx {cx}");
    assert!((cy - (32.0 - 20.0 * a.sin())).abs() < 0.01, "cy {cy}");
}

#[test]
fn rotation_on_non_square_frames_has_no_shear() {
    // 128 wide, 64 high; a bump 20 px right of the centre (64, 32).
    let img = image(64, 128, gaussian(84.0, 32.0, 2.0));
    for deg in [90.0f64, 30.0, -45.0] {
        let out = warp(
            &img,
            &Motion {
                rotate_2d: deg,
                ..mv()
            },
            SamplingMode::Bilinear,
            InfillMode::Black,
        )
        .unwrap();
        let (cx, cy) = centroid(&out);
        let a = deg.to_radians();
        let (wx, wy) = (64.0 + 20.0 * a.cos(), 32.0 - 20.0 * a.sin());
        assert!(
            (cx - wx).abs() < 0.02 && (cy - wy).abs() < 0.02,
            "{deg}°: got ({cx}, {cy}), want ({wx}, {wy})"
        );
        // Distance from the centre is preserved (a shear would change it).
        let r = ((cx - 64.0).powi(2) + (cy - 32.0).powi(2)).sqrt();
        assert!((r - 20.0).abs() < 0.02, "{deg}°: radius {r}");
    }
}

#[test]
fn rotation_maps_pixel_coordinates_exactly() {
    // Non-square: output p samples c + R(−a)·(p − c), in pixels.
    for deg in [90.0f64, 33.0] {
        let a = deg.to_radians();
        let m = Motion {
            rotate_2d: deg,
            ..mv()
        };
        let n = check_source(&m, 32, 96, |x, y| {
            let (dx, dy) = (x - 48.0, y - 16.0);
            // inverse of x' = cos·x + sin·y, y' = −sin·x + cos·y
            (
                48.0 + a.cos() * dx - a.sin() * dy,
                16.0 + a.sin() * dx + a.cos() * dy,
            )
        });
        assert!(n > 200, "{n}");
    }
}

#[test]
fn composed_motion_matches_hand_computed_map() {
    // zoom, then rotation about the centre, then translation in screen space.
    let (w, h) = (96.0, 64.0);
    let m = Motion {
        translate_x: 3.0,
        translate_y: 2.0,
        rotate_2d: 20.0,
        zoom_x_2d: 10.0,
        zoom_y_2d: 5.0,
    };
    let img = image(64, 96, gaussian(60.0, 20.0, 2.0));
    let out = warp(&img, &m, SamplingMode::Bicubic, InfillMode::Black).unwrap();
    let (dx, dy) = (
        (60.0 - w / 2.0) * w / (w - 10.0),
        (20.0 - h / 2.0) * h / (h - 5.0),
    );
    let a = 20f64.to_radians();
    let rx = a.cos() * dx + a.sin() * dy;
    let ry = -a.sin() * dx + a.cos() * dy;
    let (wx, wy) = (w / 2.0 + rx + 3.0, h / 2.0 + ry - 2.0);
    let (cx, cy) = centroid(&out);
    assert!(
        (cx - wx).abs() < 0.02 && (cy - wy).abs() < 0.02,
        "got ({cx}, {cy}), want ({wx}, {wy})"
    );
    // forward_matrix agrees with the same hand computation.
    let f = m.forward_matrix(w, h).unwrap();
    let p = f * nalgebra::Vector3::new(60.0, 20.0, 1.0);
    assert!((p[0] - wx).abs() < 1e-9 && (p[1] - wy).abs() < 1e-9);
}

#[test]
fn infill_modes_fill_as_named() {
    let (h, w) = (16i64, 24i64);
    let src = image(h, w, |x, y| ((x - 0.5) + w as f64 * (y - 0.5)) / 384.0);
    let col = |t: &Tensor, i: i64| t.narrow(3, i, 1);
    let right = Motion {
        translate_x: 6.0,
        ..mv()
    };
    for mode in SamplingMode::ALL {
        let tol = 1e-4;
        let black = warp(&src, &right, mode, InfillMode::Black).unwrap();
        let smear = warp(&src, &right, mode, InfillMode::Smear).unwrap();
        let wrap = warp(&src, &right, mode, InfillMode::Wrap).unwrap();
        let mirror = warp(&src, &right, mode, InfillMode::Mirror).unwrap();
        for j in 0..6 {
            assert!(
                col(&black, j).abs().max().double_value(&[]) < tol,
                "{mode} black"
            );
            assert!(
                max_abs_diff(&col(&smear, j), &col(&src, 0)) < tol,
                "{mode} smear"
            );
            assert!(
                max_abs_diff(&col(&wrap, j), &col(&src, 18 + j)) < tol,
                "{mode} wrap"
            );
            assert!(
                max_abs_diff(&col(&mirror, j), &col(&src, 5 - j)) < tol,
                "{mode} mirror"
            );
        }
        for out in [&black, &smear, &wrap, &mirror] {
            assert!(max_abs_diff(&out.narrow(3, 6, 18), &src.narrow(3, 0, 18)) < tol);
        }
        // Vertically: content moves up by 4, the bottom rows wrap from the top.
        let up = warp(
            &src,
            &Motion {
                translate_y: 4.0,
                ..mv()
            },
            mode,
            InfillMode::Wrap,
        )
        .unwrap();
        assert!(max_abs_diff(&up.narrow(2, 0, 12), &src.narrow(2, 4, 12)) < tol);
        assert!(max_abs_diff(&up.narrow(2, 12, 4), &src.narrow(2, 0, 4)) < tol);
    }
}

#[test]
fn wrap_has_no_seam_for_sub_pixel_motion() {
    // A horizontally periodic image shifted by a fractional amount and zoomed
    // out must match the analytic result everywhere, edges included.
    let w = 64.0;
    let p = |x: f64| 0.5 + 0.4 * (2.0 * std::f64::consts::PI * x / w).sin();
    let src = image(8, 64, |x, _| p(x));
    let shift = Motion {
        translate_x: 10.5,
        ..mv()
    };
    let want = image(8, 64, |x, _| p(x - 10.5));
    for (mode, tol) in [
        (SamplingMode::Bilinear, 0.01),
        (SamplingMode::Bicubic, 0.005),
    ] {
        let out = warp(&src, &shift, mode, InfillMode::Wrap).unwrap();
        let err = max_abs_diff(&out, &want);
        assert!(err < tol, "{mode}: max error {err}");
    }
    // The test would catch a seam: black infill differs strongly at the edge.
    let black = warp(&src, &shift, SamplingMode::Bicubic, InfillMode::Black).unwrap();
    assert!(max_abs_diff(&black, &want) > 0.3);

    // Zoom out by 32 on 64: magnification 64/96, content tiles.
    let out = warp(
        &src,
        &Motion {
            zoom_x_2d: -32.0,
            ..mv()
        },
        SamplingMode::Bicubic,
        InfillMode::Wrap,
    )
    .unwrap();
    let want = image(8, 64, |x, _| p((x - 32.0) * 1.5 + 32.0));
    let err = max_abs_diff(&out, &want);
    assert!(err < 0.01, "tiled zoom-out error {err}");
}

#[test]
fn identity_motion_returns_the_input() {
    let mut rng = Rng::new(7).unwrap();
    let src = rng.rand(&[2, 3, 17, 23]).unwrap();
    for mode in SamplingMode::ALL {
        for infill in InfillMode::ALL {
            let out = warp(&src, &mv(), mode, infill).unwrap();
            assert_eq!(out.size(), src.size());
            assert_eq!(out.kind(), Kind::Float);
            let err = max_abs_diff(&out, &src);
            assert!(err < 1e-4, "{mode}/{infill}: identity error {err}");
        }
    }
}

#[test]
fn each_image_of_a_batch_is_warped_alike() {
    let mut rng = Rng::new(3).unwrap();
    let a = rng.rand(&[1, 3, 12, 20]).unwrap();
    let b = rng.rand(&[1, 3, 12, 20]).unwrap();
    let m = Motion {
        translate_x: 1.3,
        rotate_2d: 7.0,
        zoom_x_2d: 2.0,
        ..mv()
    };
    let both = warp(
        &Tensor::cat(&[&a, &b], 0),
        &m,
        SamplingMode::Bicubic,
        InfillMode::Mirror,
    )
    .unwrap();
    let wa = warp(&a, &m, SamplingMode::Bicubic, InfillMode::Mirror).unwrap();
    let wb = warp(&b, &m, SamplingMode::Bicubic, InfillMode::Mirror).unwrap();
    assert!(max_abs_diff(&both, &Tensor::cat(&[&wa, &wb], 0)) < 1e-6);
}

#[test]
fn latent_warp_moves_by_pixels_over_factor() {
    let mut rng = Rng::new(11).unwrap();
    let z = rng.randn(&[1, 4, 6, 8]).unwrap();
    // 32 px right on a f16 latent = 2 cells.
    let out = warp_latent(
        &z,
        &Motion {
            translate_x: 32.0,
            ..mv()
        },
        16.0,
        SamplingMode::Bicubic,
        InfillMode::Wrap,
    )
    .unwrap();
    assert!(max_abs_diff(&out.narrow(3, 2, 6), &z.narrow(3, 0, 6)) < 1e-4);
    assert!(max_abs_diff(&out.narrow(3, 0, 2), &z.narrow(3, 6, 2)) < 1e-4);
    // Zoom keeps the magnification W/(W−z): 64 px on a 128-px-wide frame
    // (8 cells of 16) magnifies by 2, like 4 cells on the 8-cell grid.
    let m = Motion {
        zoom_x_2d: 64.0,
        rotate_2d: 15.0,
        translate_y: 8.0,
        ..mv()
    };
    let a = warp_latent(&z, &m, 16.0, SamplingMode::Bilinear, InfillMode::Smear).unwrap();
    let b = warp(
        &z,
        &Motion {
            zoom_x_2d: 4.0,
            rotate_2d: 15.0,
            translate_y: 0.5,
            ..mv()
        },
        SamplingMode::Bilinear,
        InfillMode::Smear,
    )
    .unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
    assert!(warp_latent(&z, &m, 0.0, SamplingMode::Bilinear, InfillMode::Smear).is_err());
}

#[test]
fn bad_motion_and_bad_input_are_errors() {
    let img = Tensor::zeros([1, 3, 8, 256], (Kind::Float, Device::Cpu));
    let err = warp(
        &img,
        &Motion {
            zoom_x_2d: 256.0,
            ..mv()
        },
        SamplingMode::Bicubic,
        InfillMode::Wrap,
    )
    .unwrap_err();
    assert!(err.message.contains("zoom_x_2d"), "{err}");
    let err = warp(
        &img,
        &Motion {
            rotate_2d: f64::NAN,
            ..mv()
        },
        SamplingMode::Bicubic,
        InfillMode::Wrap,
    )
    .unwrap_err();
    assert!(err.message.contains("rotate_2d"), "{err}");
    let flat = Tensor::zeros([3, 8, 8], (Kind::Float, Device::Cpu));
    assert!(warp(&flat, &mv(), SamplingMode::Bicubic, InfillMode::Wrap).is_err());
}

#[test]
fn mode_names_parse_exactly_and_serialise_lowercase() {
    for m in SamplingMode::ALL {
        assert_eq!(m.name().parse::<SamplingMode>().unwrap(), m);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!("\"{}\"", m.name())
        );
    }
    for m in InfillMode::ALL {
        assert_eq!(m.name().parse::<InfillMode>().unwrap(), m);
        let back: InfillMode = serde_json::from_str(&format!("\"{m}\"")).unwrap();
        assert_eq!(back, m);
    }
    let names: Vec<_> = SamplingMode::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["nearest", "bilinear", "bicubic"]);
    let names: Vec<_> = InfillMode::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["wrap", "mirror", "black", "smear"]);
    let err = "bicubc".parse::<SamplingMode>().unwrap_err();
    assert!(err.message.contains("sampling_mode") && err.message.contains("bicubic"));
    let err = "reflect".parse::<InfillMode>().unwrap_err();
    assert!(err.message.contains("infill_mode") && err.message.contains("mirror"));
    assert_eq!(SamplingMode::default(), SamplingMode::Bicubic);
    assert_eq!(InfillMode::default(), InfillMode::Wrap);
}

#[test]
fn reduced_precision_images_keep_accurate_coordinates() {
    // Steep content (period 8 px): sampling with bf16 coordinates (about
    // 0.5 px of error at x ≈ 256) would be off by up to 0.2 here.
    let img = image(8, 256, |x, _| {
        0.5 + 0.4 * (std::f64::consts::TAU * x / 8.0).sin()
    })
    .to_kind(Kind::BFloat16);
    let m = Motion {
        translate_x: 0.5,
        ..mv()
    };
    let out = warp(&img, &m, SamplingMode::Bilinear, InfillMode::Smear).unwrap();
    assert_eq!(out.kind(), Kind::BFloat16);
    let f32_out = warp(
        &img.to_kind(Kind::Float),
        &m,
        SamplingMode::Bilinear,
        InfillMode::Smear,
    )
    .unwrap();
    // Only the final rounding to bf16 differs (8-bit mantissa: < 0.4 %).
    let err = max_abs_diff(&out.to_kind(Kind::Float), &f32_out);
    assert!(err < 4e-3, "bf16 warp error {err}");
}

/// Runs only where CUDA is available (the GPU machine): the CUDA warp must
/// agree with the CPU warp for every mode.
#[test]
fn cuda_warp_matches_cpu() {
    if !tch::Cuda::is_available() {
        eprintln!("CUDA not available: cuda_warp_matches_cpu checks nothing here");
        return;
    }
    let mut rng = Rng::new(5).unwrap();
    let src = rng.rand(&[2, 3, 40, 72]).unwrap();
    let m = Motion {
        translate_x: 3.3,
        translate_y: -1.2,
        rotate_2d: 11.0,
        zoom_x_2d: 4.0,
        zoom_y_2d: -2.0,
    };
    for mode in SamplingMode::ALL {
        for infill in InfillMode::ALL {
            let cpu = warp(&src, &m, mode, infill).unwrap();
            let gpu = warp(&src.to_device(Device::Cuda(0)), &m, mode, infill).unwrap();
            assert_eq!(gpu.device(), Device::Cuda(0));
            let err = max_abs_diff(&cpu, &gpu.to_device(Device::Cpu));
            // Nearest may pick the other neighbour at exact ties.
            let tol = if mode == SamplingMode::Nearest {
                1.0
            } else {
                1e-4
            };
            assert!(err < tol, "{mode}/{infill}: CPU and CUDA differ by {err}");
        }
    }
}
