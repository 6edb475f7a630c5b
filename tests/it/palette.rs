//! The Limited Palette image model (pytti's `PixelImage`,
//! `src/guidance/palette.rs`): its decode, losses and gradient against
//! pytti's formulas (`scripts/reference/gen_palette_fixtures.py`), the
//! clamps, the smart encode, palette locking, target palettes, the scene
//! settings and, through the binary, `show_palette`, errors and a kill -9 /
//! `--resume` render.

use crate::support::{max_abs_diff, opts};
use std::path::Path;
use tch::{Device, Kind, Tensor};
use zoetrope::guidance::adam::Adam;
use zoetrope::guidance::image::{ImageModel, ImageState};
use zoetrope::guidance::palette::{
    decode_parts, hdr_loss, normalization_loss, sort_palette, Layout, LimitedPalette, PaletteConfig,
};
use zoetrope::rng::Rng;
use zoetrope::scene::Scene;

const TOL: f64 = 1e-5;

fn fixtures() -> Vec<(String, Tensor)> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette/palette.safetensors");
    Tensor::read_safetensors(&p).expect("run scripts/reference/gen_palette_fixtures.py")
}

fn get(f: &[(String, Tensor)], name: &str) -> Tensor {
    f.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
        .1
        .shallow_clone()
}

/// The generator's settings: S 5, N 4, 6 × 7, gamma 1.7, HDR 0.3, norm 0.2.
fn config() -> PaletteConfig {
    PaletteConfig {
        palette_size: 5,
        palettes: 4,
        gamma: 1.7,
        hdr_weight: 0.3,
        norm_weight: 0.2,
        random_initial_palette: false,
        lock_palette: false,
    }
}

fn layout() -> Layout {
    Layout {
        s: 5,
        n: 4,
        h: 6,
        w: 7,
    }
}

fn flat(f: &[(String, Tensor)]) -> Tensor {
    Tensor::cat(
        &[
            get(f, "raw").reshape([-1]),
            get(f, "v").reshape([-1]),
            get(f, "t").reshape([-1]),
        ],
        0,
    )
}

fn close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size(), "{what}: shapes");
    let d = max_abs_diff(a, b);
    assert!(d <= tol, "{what}: max |diff| {d:e} > {tol:e}");
}

/// Decode, sorted palette and both losses of fixed parameters are pytti's.
#[test]
fn forward_and_losses_match_pyttis_formulas() {
    let f = fixtures();
    let (raw, v, t) = (get(&f, "raw"), get(&f, "v"), get(&f, "t"));
    let sorted = sort_palette(&raw).unwrap();
    close("sorted palette", &sorted, &get(&f, "sorted"), TOL);
    let image = decode_parts(&sorted, &v, &t).unwrap();
    close("decoded image", &image, &get(&f, "image"), TOL);
    close(
        "HDR loss",
        &hdr_loss(&sorted, 1.7).unwrap(),
        &get(&f, "hdr"),
        TOL,
    );
    close(
        "palette normalisation loss",
        &normalization_loss(&t).unwrap(),
        &get(&f, "norm"),
        TOL,
    );
}

/// `sum(image · r) + 0.3 · HDR + 0.2 · norm` and its gradient, through the
/// model's flat parameter, unlocked and locked.
#[test]
fn gradient_matches_pyttis_formulas() {
    let f = fixtures();
    let r = get(&f, "r");
    for locked in [false, true] {
        let mut model = LimitedPalette::new(config()).unwrap();
        let start = flat(&f);
        if locked {
            // lock_palette locks the sorted palette of the start; then a
            // model locked to the fixture's fixed palette.
            let mut c = config();
            c.lock_palette = true;
            model = LimitedPalette::new(c).unwrap();
            let _ = model.lock(&start, layout(), None).unwrap();
            close(
                "locked = sorted start",
                model.locked().unwrap(),
                &get(&f, "sorted"),
                0.0,
            );
            model = locked_to(&get(&f, "locked"));
        }
        let param = start.set_requires_grad(true);
        let image = model.decode(&param, layout()).unwrap();
        let extra = model.image_losses(&param, layout(), 0.3).unwrap().unwrap();
        let loss = (&image * &r).sum(Kind::Float) + &extra;
        loss.backward();
        let grad = param.grad();
        let [g_raw, g_v, g_t] = layout().parts(&grad).unwrap();
        let p = if locked { "locked_" } else { "" };
        close("image", &image, &get(&f, &format!("{p}image")), TOL);
        if !locked {
            close("loss", &loss, &get(&f, "loss"), TOL);
        }
        close("grad P", &g_raw, &get(&f, &format!("{p}grad_raw")), TOL);
        close("grad v", &g_v, &get(&f, &format!("{p}grad_v")), TOL);
        close("grad t", &g_t, &get(&f, &format!("{p}grad_t")), TOL);
    }
}

/// A model locked (`lock_palette`) to `palette` (sorted, in `[0, 1]`):
/// locking a start whose `P` is `2 · palette`.
fn locked_to(palette: &Tensor) -> LimitedPalette {
    let mut c = config();
    c.lock_palette = true;
    let mut model = LimitedPalette::new(c).unwrap();
    let l = layout();
    let rest = Tensor::zeros([l.numel() - 60], opts());
    let start = Tensor::cat(&[(palette * 2.0).reshape([-1]), rest], 0);
    let _ = model.lock(&start, l, None).unwrap();
    assert_eq!(max_abs_diff(model.locked().unwrap(), palette), 0.0);
    model
}

/// pytti's `update`: P to [0, 2], v to [0, 1], t to ≥ 0.
#[test]
fn clamps_after_a_step_are_pyttis() {
    let f = fixtures();
    let model = LimitedPalette::new(config()).unwrap();
    let param = flat(&f);
    model.clamp(&param, layout()).unwrap();
    close("clamped", &param, &get(&f, "clamped"), 0.0);
}

/// The encode's brightness and its first smart-encode steps (Adam at 0.1
/// on P and t, HSV loss + 0.01 HDR + normalisation) are pytti's.
#[test]
fn encode_matches_pyttis_smart_encode() {
    let f = fixtures();
    let model = LimitedPalette::new(config()).unwrap();
    let start = get(&f, "clamped");
    let rgb = get(&f, "rgb");
    let zero = model.encode_steps(&start, &rgb, layout(), 0).unwrap();
    let [_, v, _] = layout().parts(&zero).unwrap();
    close("brightness", &v, &get(&f, "brightness"), TOL);
    for k in [1usize, 3] {
        let got = model.encode_steps(&start, &rgb, layout(), k).unwrap();
        // Adam's first steps move every element by about ±lr whatever its
        // gradient's size, so compare to float32 rounding of the updates.
        close(
            &format!("encoded after {k}"),
            &got,
            &get(&f, &format!("encoded_{k}")),
            1e-4,
        );
    }
}

/// A random Limited Palette state on the CPU.
fn state(c: PaletteConfig, target: Option<Tensor>, w: i64, h: i64, seed: u64) -> ImageState {
    let model = ImageModel::LimitedPalette {
        model: LimitedPalette::new(c).unwrap(),
        target,
    };
    let mut rng = Rng::new(seed).unwrap();
    ImageState::start(model, w, h, Device::Cpu, &mut rng, None).unwrap()
}

/// Adam steps on `sum(image · r)` + the model's losses, as a render's step
/// (without CLIP), clamping after each.
fn optimise(state: &mut ImageState, steps: usize) {
    let mut rng = Rng::new(11).unwrap();
    let r = rng.randn(&[1, 3, state.height(), state.width()]).unwrap();
    let mut adam = Adam::new(state.param(), state.default_lr()).unwrap();
    for _ in 0..steps {
        let image = match state.model() {
            ImageModel::LimitedPalette { model, .. } => model
                .decode(state.param(), state.layout().unwrap())
                .unwrap(),
            _ => unreachable!(),
        };
        let layout = state.layout().unwrap();
        let extra = match state.model() {
            ImageModel::LimitedPalette { model, .. } => model
                .image_losses(state.param(), layout, model.config.hdr_weight)
                .unwrap()
                .unwrap(),
            _ => unreachable!(),
        };
        ((&image * &r).sum(Kind::Float) + extra).backward();
        adam.step(state.param_mut()).unwrap();
        if let ImageModel::LimitedPalette { model, .. } = state.model() {
            model.clamp(state.param(), layout).unwrap();
        }
    }
}

/// `lock_palette`: the palette part and the palette shown never change,
/// while brightness and weights do; unlocked, the palette moves.
#[test]
fn a_locked_palette_stays_fixed_over_steps() {
    for lock in [true, false] {
        let mut c = config();
        c.palette_size = 4;
        c.gamma = 1.0; // the ramp stays inside [0, 2]
        c.lock_palette = lock;
        let mut s = state(c, None, 8, 6, 7);
        let layout = s.layout().unwrap();
        let before = s.param().detach().copy();
        let shown_before = s.palette_image().unwrap().unwrap();
        optimise(&mut s, 20);
        let [p0, v0, t0] = layout.parts(&before).unwrap();
        let [p1, v1, t1] = layout.parts(&s.param().detach()).unwrap();
        assert!(max_abs_diff(&v0, &v1) > 1e-3 && max_abs_diff(&t0, &t1) > 1e-3);
        let shown_after = s.palette_image().unwrap().unwrap();
        if lock {
            assert_eq!(
                max_abs_diff(&p0, &p1),
                0.0,
                "locked palette parameter moved"
            );
            assert_eq!(max_abs_diff(&shown_before, &shown_after), 0.0);
        } else {
            assert!(
                max_abs_diff(&p0, &p1) > 1e-3,
                "unlocked palette did not move"
            );
            assert!(max_abs_diff(&shown_before, &shown_after) > 1e-3);
        }
    }
}

/// Red on the left half, blue on the right, `[1, 3, h, w]`.
fn red_and_blue(w: i64, h: i64) -> (Tensor, Tensor, Tensor) {
    let red = Tensor::from_slice(&[0.9f32, 0.1, 0.1]).view([1, 3, 1, 1]);
    let blue = Tensor::from_slice(&[0.1f32, 0.2, 0.8]).view([1, 3, 1, 1]);
    let left = red.expand([1, 3, h, w / 2], false);
    let right = blue.expand([1, 3, h, w / 2], false);
    (Tensor::cat(&[left, right], 3).contiguous(), red, blue)
}

/// `target_palette` from a start whose weights already separate the two
/// halves (palette 0 left, palette 1 right): the encode (pytti's 201 HSV
/// steps) turns those palettes into the image's colours, and the locked
/// palette holds both. (From a random start pytti's encode can settle on
/// mixtures instead: its formulas do, for some seeds.)
#[test]
fn a_target_palette_takes_the_images_colours() {
    let (w, h) = (8i64, 6i64);
    let (image, red, blue) = red_and_blue(w, h);
    let mut c = config();
    c.palette_size = 3;
    c.palettes = 2;
    c.gamma = 1.0;
    let mut model = LimitedPalette::new(c).unwrap();
    let l = model.layout(h, w);
    let ramp = Tensor::from_slice(&[0.0f32, 1.0, 2.0])
        .view([3, 1, 1])
        .expand([3, 2, 3], false)
        .reshape([-1]);
    let left = Tensor::cat(
        &[
            Tensor::ones([h, w / 2], opts()),
            Tensor::zeros([h, w / 2], opts()),
        ],
        1,
    );
    let t = Tensor::stack(&[&left, &(1.0 - &left)], 0).reshape([-1]);
    let start = Tensor::cat(&[ramp, Tensor::full([h * w], 0.5, opts()), t], 0);
    let param = model.lock(&start, l, Some(&image)).unwrap();
    let locked = model.locked().expect("target_palette locks the palette");
    let [raw, v, _] = l.parts(&param).unwrap();
    assert_eq!(
        max_abs_diff(&raw, locked),
        0.0,
        "pytti writes the target into P"
    );
    let [_, v0, _] = l.parts(&start).unwrap();
    assert_eq!(
        max_abs_diff(&v, &v0),
        0.0,
        "the image's own brightness and weights stay"
    );
    let colours = locked.reshape([-1, 3]);
    for (name, c) in [("red", &red), ("blue", &blue)] {
        let d = (&colours - c.view([1, 3])).abs().max_dim(1, false).0.min();
        let d = d.double_value(&[]);
        assert!(d < 0.05, "no palette colour within 0.05 of {name}: {d}");
    }
}

/// Through `ImageState::start` with a random start: the palette is locked
/// to the encoded target's sorted palette, written into P, unlike the grey
/// ramp, and steps leave it alone.
#[test]
fn a_target_palette_locks_the_render_palette() {
    let (w, h) = (8i64, 6i64);
    let (image, _, _) = red_and_blue(w, h);
    let mut c = config();
    c.palette_size = 3;
    c.palettes = 2;
    let mut s = state(c, Some(image), w, h, 3);
    let layout = s.layout().unwrap();
    let ImageModel::LimitedPalette { model, .. } = s.model() else {
        unreachable!()
    };
    let locked = model
        .locked()
        .expect("target_palette locks the palette")
        .copy();
    let [raw, _, _] = layout.parts(&s.param().detach()).unwrap();
    assert_eq!(max_abs_diff(&raw, &locked), 0.0);
    let grey = sort_palette(
        &Tensor::from_slice(&[0.0f32, 1.0, 3.249])
            .view([3, 1, 1])
            .expand([3, 2, 3], false),
    )
    .unwrap();
    assert!(
        max_abs_diff(&locked, &grey) > 0.3,
        "still the grey ramp: {locked:?}"
    );
    let shown = s.palette_image().unwrap().unwrap();
    optimise(&mut s, 5);
    assert_eq!(
        max_abs_diff(&s.palette_image().unwrap().unwrap(), &shown),
        0.0
    );
}

/// `init_image`: the start is the random state (as pytti's `encode_random`)
/// encoded toward the image: brightness = the image's HSP brightness, and
/// after the smart encode the image decodes closer to it than the random
/// start did.
#[test]
fn an_init_image_is_encoded_as_pytti_encodes_it() {
    let (w, h) = (8i64, 6i64);
    let (image, _, _) = red_and_blue(w, h);
    let mut c = config();
    c.palette_size = 4;
    c.palettes = 3;
    let model = |c| ImageModel::LimitedPalette {
        model: LimitedPalette::new(c).unwrap(),
        target: None,
    };
    let random =
        ImageState::start(model(c), w, h, Device::Cpu, &mut Rng::new(4).unwrap(), None).unwrap();
    let init = ImageState::start(
        model(c),
        w,
        h,
        Device::Cpu,
        &mut Rng::new(4).unwrap(),
        Some(&image),
    )
    .unwrap();
    let layout = init.layout().unwrap();
    let [_, v, _] = layout.parts(&init.param().detach()).unwrap();
    let hsp = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([1, 3, 1, 1]);
    let brightness = (&image * &image * hsp)
        .sum_dim_intlist(1, false, Kind::Float)
        .sqrt();
    close("init brightness", &v, &brightness.view([h, w]), 1e-6);
    let err = |s: &ImageState| {
        (s.image().unwrap() - &image)
            .abs()
            .mean(Kind::Float)
            .double_value(&[])
    };
    assert!(
        err(&init) < 0.5 * err(&random),
        "{} vs {}",
        err(&init),
        err(&random)
    );
}

/// The grid compares VQGAN models: a Limited Palette scene is refused as
/// the Unlimited Palette is, naming the model.
#[test]
fn the_grid_refuses_a_limited_palette_scene() {
    let scene = Scene::from_str(
        "scenes = \"a\"\nimage_model = \"Limited Palette\"\n",
        "dir/p.toml",
    )
    .unwrap();
    let spec = zoetrope::grid::GridSpec::parse("imagenet", "RN50").unwrap();
    let e = spec.cell_scene(&scene, &spec.cells()[0]).unwrap_err();
    assert!(
        e.message.contains("image_model") && e.message.contains("Limited Palette"),
        "{e}"
    );
}

/// The settings, their defaults (pytti-core's default.yaml) and pytti's
/// learning rate 0.02.
#[test]
fn scene_settings_and_learning_rate() {
    let s = Scene::from_str(
        "scenes = \"a\"\nimage_model = \"Limited Palette\"\nseed = 1\n",
        "dir/p.toml",
    )
    .unwrap();
    let p = &s.image.palette;
    assert_eq!((p.palette_size, p.palettes), (5, 20));
    assert_eq!(
        (p.gamma, p.hdr_weight, p.palette_normalization_weight),
        (1.0, 0.01, 0.2)
    );
    assert!(!p.lock_palette && !p.random_initial_palette && !p.show_palette);
    assert_eq!(p.target_palette, None);
    assert_eq!(s.optimizer.learning_rate, 0.02);
    let st = state(config(), None, 4, 4, 1);
    assert_eq!(st.default_lr(), 0.02);
    let toml = s.to_toml().unwrap();
    for key in [
        "palette_size = 5",
        "palettes = 20",
        "hdr_weight = 0.01",
        "lock_palette = false",
    ] {
        assert!(toml.contains(key), "settings.toml lacks {key}: {toml}");
    }
    let back = Scene::from_str(&toml, "dir/p.toml").unwrap();
    assert_eq!(back.image.palette, s.image.palette);
    for (text, key) in [
        ("palette_size = 0", "palette_size"),
        ("palettes = 1", "palettes"),
        ("gamma = 0", "gamma"),
        ("hdr_weight = -1", "hdr_weight"),
        ("lock_palette = 3", "lock_palette"),
    ] {
        let scene = format!("scenes = \"a\"\nimage_model = \"Limited Palette\"\n{text}\n");
        let e = Scene::from_str(&scene, "dir/p.toml").expect_err(text);
        assert!(
            e.message.contains(key) && e.message.contains("p.toml:3"),
            "{}",
            e.message
        );
    }
}

/// A VQGAN scene warns about a palette setting only when it changes
/// something: the resolved settings a render records (and a converted
/// preset) write every palette setting at its default, and must load back
/// without a warning per setting.
#[test]
fn palette_settings_warn_only_when_changed_for_another_model() {
    let warns = |extra: &str| {
        let text = format!("scenes = \"a\"\n{extra}\n");
        Scene::from_str(&text, "dir/v.toml").unwrap().warnings
    };
    let defaults = "palette_size = 5\npalettes = 20\ngamma = 1\nhdr_weight = 0.01\n\
                    palette_normalization_weight = 0.2\nlock_palette = false\n\
                    random_initial_palette = false\nshow_palette = false";
    assert!(warns(defaults).is_empty(), "{:?}", warns(defaults));
    let changed = warns("palette_size = 7\nlock_palette = true");
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed[0].starts_with("palette_size only affects"));
    assert!(changed[1].starts_with("lock_palette only affects"));
    let vqgan_toml = Scene::from_str("scenes = \"a\"\n", "dir/v.toml")
        .unwrap()
        .to_toml()
        .unwrap();
    let back = Scene::from_str(&vqgan_toml, "dir/v.toml").unwrap();
    let palette_warnings = back.warnings.iter().filter(|w| w.contains("only affects"));
    assert_eq!(palette_warnings.count(), 0, "{:?}", back.warnings);
}

#[cfg(feature = "video")]
mod binary {
    //! Through the binary, on the tiny CLIP: show_palette, errors, resume.

    use crate::support::{
        frames_of, has_frame, kill_when, render_ok, run_tiny as run, stderr,
        tiny_command as zoetrope, write_scene,
    };
    use std::process::Stdio;

    /// 4 frames of 3 steps, 2D motion, Limited Palette with 4 grey-ramp
    /// colours in 3 palettes.
    const SCENE: &str = r#"
scenes = "a lighthouse on a rocky coast"
perceptors = ["tiny-clip"]
image_model = "Limited Palette"
palette_size = 4
palettes = 3
width = 24
height = 16
steps_per_scene = 12
steps_per_frame = 3
cutouts = 4
animation_mode = "2D"
zoom_x_2d = 1
translate_y = 1
seed = 5
"#;

    /// show_palette writes pytti's palette picture per frame: 16 px per
    /// palette across, 32 px per colour down; locked, it is the grey ramp
    /// `linspace(0, 2, 4) / 2` every frame.
    #[test]
    fn show_palette_writes_the_palettes() {
        let t = tempfile::tempdir().unwrap();
        let text = format!("{SCENE}show_palette = true\nlock_palette = true\n");
        let scene = write_scene(t.path(), "shown.toml", &text);
        let out = t.path().join("out");
        render_ok(&scene, &out);
        let dir = out.join("shown").join("palettes");
        for k in 1..=4 {
            let img = image::open(dir.join(format!("palette_{k:05}.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(img.dimensions(), (16 * 3, 32 * 4));
            for (j, grey) in [0u8, 85, 170, 255].iter().enumerate() {
                for x in [0, 20, 47] {
                    let px = img.get_pixel(x, 32 * j as u32 + 5).0;
                    assert_eq!(px, [*grey; 3], "frame {k}, colour {j}, x {x}");
                }
            }
        }
        let settings = std::fs::read_to_string(out.join("shown/settings.toml")).unwrap();
        assert!(
            settings.contains("image_model = \"Limited Palette\""),
            "{settings}"
        );
        assert!(settings.contains("show_palette = true"), "{settings}");
    }

    /// User errors are exit 2 naming the setting.
    #[test]
    fn palette_errors_name_the_setting() {
        let t = tempfile::tempdir().unwrap();
        for (text, key) in [
            (
                SCENE.replace("palette_size = 4", "palette_size = 0"),
                "palette_size",
            ),
            (
                format!("{SCENE}target_palette = \"missing.png\"\n"),
                "target_palette",
            ),
            (SCENE.replace("palettes = 3", "palettes = 1"), "palettes"),
        ] {
            let extra = &text;
            let scene = write_scene(t.path(), "bad.toml", &text);
            let out = t.path().join("out");
            let scene = scene.to_str().unwrap();
            for args in [
                vec!["plan", scene],
                vec!["render", scene, "--out", out.to_str().unwrap()],
            ] {
                let cmd = args[0];
                let o = run(&args);
                let err = stderr(&o);
                assert_eq!(o.status.code(), Some(2), "{cmd} {extra}: {err}");
                assert!(err.contains(key) && !err.contains("panicked"), "{err}");
            }
        }
    }

    /// kill -9 during a Limited Palette render with a target palette, then
    /// --resume: the same frames as an uninterrupted run.
    #[test]
    fn killed_limited_palette_render_resumes_to_the_same_frames() {
        let t = tempfile::tempdir().unwrap();
        let mut target = image::RgbImage::new(8, 8);
        for (x, _, p) in target.enumerate_pixels_mut() {
            *p = if x < 4 {
                image::Rgb([200, 40, 30])
            } else {
                image::Rgb([20, 60, 210])
            };
        }
        target.save(t.path().join("target.png")).unwrap();
        let text = format!("{SCENE}target_palette = \"target.png\"\nshow_palette = true\n")
            .replace("steps_per_scene = 12", "steps_per_scene = 24")
            .replace("steps_per_frame = 3", "steps_per_frame = 4");
        let scene = write_scene(t.path(), "killed.toml", &text);
        let whole = t.path().join("whole");
        render_ok(&scene, &whole);
        let reference = frames_of(&whole.join("killed"), 6);

        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let after = 1 + (nanos % 4) as usize;
        let broken = t.path().join("broken");
        let child = zoetrope(&[
            "render",
            scene.to_str().unwrap(),
            "--out",
            broken.to_str().unwrap(),
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let dir = broken.join("killed");
        kill_when(child, &format!("frame {after}"), || has_frame(&dir, after));
        let o = run(&["render", "--resume", dir.to_str().unwrap(), "-q"]);
        assert!(
            o.status.success(),
            "kill after frame {after}: {}",
            stderr(&o)
        );
        assert_eq!(frames_of(&dir, 6), reference, "killed after frame {after}");
        for k in 1..=6 {
            let name = format!("palettes/palette_{k:05}.png");
            assert_eq!(
                std::fs::read(dir.join(&name)).unwrap(),
                std::fs::read(whole.join("killed").join(&name)).unwrap(),
                "{name}"
            );
        }
    }
}
