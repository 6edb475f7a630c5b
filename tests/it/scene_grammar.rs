//! The scene file, prompt grammar, expressions and keyframes through the
//! public API, including the error messages and the timeline edge cases.

use zoetrope::scene::{
    prompt::parse_scenes, AnimationMode, ImageModel, Param, PromptSource, Scene, Transition,
    VqganChoice, VqganModel,
};
use zoetrope::schedule::Timeline;
use zoetrope::ErrorKind;

fn load(text: &str) -> Scene {
    match Scene::from_str(text, "dir/test.toml") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn err(text: &str) -> String {
    let e = Scene::from_str(text, "dir/test.toml").expect_err("should fail");
    assert_eq!(e.kind, ErrorKind::Input, "{e}");
    assert_eq!(e.exit_code(), 2);
    e.message
}

#[test]
fn defaults_are_spec_section_1() {
    let s = load("scenes = \"a\"\nseed = 3");
    assert_eq!(s.timing.steps_per_scene, 100);
    assert_eq!(s.timing.steps_per_frame, 50);
    assert_eq!(s.timing.interpolation_steps, 0);
    assert_eq!(s.timing.transition, Transition::Centered);
    assert_eq!(s.timing.save_every, 50);
    assert_eq!(s.timing.pre_animation_steps, 0);
    assert_eq!(s.timing.frames_per_second, 12.0);
    assert_eq!(
        (s.image.width, s.image.height, s.image.pixel_size),
        (256, 128, 1)
    );
    assert_eq!(s.image.image_model, ImageModel::Vqgan);
    assert_eq!(
        s.image.vqgan_model,
        VqganChoice::Named(VqganModel::Imagenet)
    );
    assert_eq!(s.guidance.perceptors, vec!["ViT-B/32"]);
    assert_eq!(
        (
            s.guidance.cutouts,
            s.guidance.cut_pow,
            s.guidance.cutout_border
        ),
        (40, 2.0, 0.25)
    );
    assert_eq!(s.optimizer.learning_rate, 0.1);
    assert!(s.optimizer.reset_lr_each_frame && s.optimizer.reencode_each_frame);
    assert_eq!(s.optimizer.seed, 3);
    assert!(!s.seed_was_random);
    assert_eq!(s.motion.animation_mode, AnimationMode::Off);
    assert_eq!(s.motion.zoom_x_2d.as_constant(), Some(0.0));
    assert_eq!(s.output.file_namespace, "test");
    assert!(!s.output.allow_overwrite);
    assert_eq!(s.run.device, "auto");
    assert!(s.stabilization.init_image.is_none() && s.stabilization.direct_init_weight.is_none());
    // resolved learning-rate defaults per model
    assert_eq!(
        load("scenes = \"a\"\nvqgan_model = \"openimages\"")
            .optimizer
            .learning_rate,
        0.15
    );
    assert_eq!(
        load("scenes = \"a\"\nimage_model = \"Unlimited Palette\"")
            .optimizer
            .learning_rate,
        0.02
    );
    assert!(load("scenes = \"a\"").seed_was_random);
}

#[test]
fn unknown_keys_and_types_name_position_and_fix() {
    let m = err("scenes = \"a\"\n\ncut_pwo = 1\n");
    assert!(m.contains("dir/test.toml:3:1"), "{m}");
    assert!(
        m.contains("`cut_pwo`") && m.contains("did you mean `cut_pow`"),
        "{m}"
    );
    let m = err("scenes = \"a\"\nwidth = \"wide\"\n");
    assert!(
        m.contains("dir/test.toml:2:9") && m.contains("setting `width`"),
        "{m}"
    );
    assert!(m.contains("expected a number, found string"), "{m}");
    let m = err("scenes = \"a\"\ncutouts = 1.5\n");
    assert!(m.contains("whole number"), "{m}");
    let m = err("scenes = \"a\"\nvqgan_model = \"imagenett\"\n");
    assert!(m.contains("did you mean `imagenet`"), "{m}");
    let m = err("scenes = \"a\"\nanimation_mode = \"3D\"\n");
    assert!(m.contains("not supported"), "{m}");
    let m = err("steps_per_frame = 10\n");
    assert!(m.contains("`scenes` is missing"), "{m}");
    let m = err("scenes = \"a\"\n[motion]\nzoom = 1\n");
    assert!(m.contains("no tables"), "{m}");
    let m = err("scenes = \"a\nwidth = 3\n");
    assert!(
        m.contains("dir/test.toml:1:") && m.contains("not valid TOML"),
        "{m}"
    );
    let m = err("scenes = \"a\"\ndirect_init_weight = 1\n");
    assert!(m.contains("needs an init_image"), "{m}");
    let m = err("scenes = \"a\"\ndevice = \"gpu\"\n");
    assert!(m.contains("cuda:0"), "{m}");
}

#[test]
fn sizes_round_down_to_the_vqgan_factor() {
    let s = load("scenes = \"a\"\nwidth = 300\nheight = 130");
    assert_eq!((s.image.width, s.image.height), (288, 128));
    assert_eq!(s.warnings.len(), 2);
    assert!(
        s.warnings[0].contains("rounded down to 288"),
        "{:?}",
        s.warnings
    );
    let s = load("scenes = \"a\"\nwidth = 300\nvqgan_model = \"openimages\"");
    assert_eq!(s.image.width, 296);
    let s = load("scenes = \"a\"\nwidth = 300\nimage_model = \"Unlimited Palette\"");
    assert_eq!(s.image.width, 300);
    assert!(s.warnings.is_empty());
    assert!(err("scenes = \"a\"\nwidth = 15").contains("smaller than the VQGAN factor"));
}

#[test]
fn pytti_perceptor_flags() {
    let s = load("scenes = \"a\"\nViTB32 = true\nViTB16 = true\nRN50 = false\nuse_mmc = true");
    assert_eq!(s.guidance.perceptors, vec!["ViT-B/32", "ViT-B/16"]);
    assert!(s.warnings.iter().any(|w| w.contains("use_mmc")));
    let s = load("scenes = \"a\"\nperceptors = [\"RN50\", \"vit-l/14@336px\"]\nRN101 = true");
    assert_eq!(
        s.guidance.perceptors,
        vec!["RN50", "ViT-L/14@336px", "RN101"]
    );
    let m = err("scenes = \"a\"\nViTB32 = false");
    assert!(m.contains("no perceptor left"), "{m}");
    let m = err("scenes = \"a\"\nperceptors = [\"ViT-B/31\"]");
    assert!(
        m.contains("unknown perceptor") && m.contains("ViT-B/32"),
        "{m}"
    );
}

#[test]
fn prompt_grammar() {
    let s = parse_scenes(
        "a red fox:2 | [pics/x:y.png]:0.5:0.2 ||  at 10\\:30 pm  |  | sky:-1:-.9  ||",
        "",
        " | blur:-t/10",
    )
    .unwrap();
    assert_eq!(s.len(), 2, "trailing empty scene dropped");
    assert_eq!(s[0].len(), 3);
    assert_eq!(s[0][0].source, PromptSource::Text("a red fox".into()));
    assert_eq!(s[0][0].weight.eval(0.0, 0.0), 2.0);
    assert_eq!(s[0][1].source, PromptSource::Image("pics/x:y.png".into()));
    assert_eq!(s[0][1].stop_at(0.0, 0.0), 0.2);
    assert_eq!(s[0][2].weight.eval(5.0, 0.0), -0.5);
    assert_eq!(s[1].len(), 3, "empty piece dropped");
    assert_eq!(s[1][0].source, PromptSource::Text("at 10:30 pm".into()));
    assert_eq!(s[1][1].weight.eval(0.0, 0.0), -1.0);
    assert_eq!(s[1][1].stop_at(0.0, 0.0), -0.9);
    assert_eq!(s[1][0].stop_at(0.0, 0.0), f64::NEG_INFINITY);

    // errors quote the prompt and mark the field
    let e = parse_scenes("ok || a cat:1:sin(", "", "").unwrap_err();
    assert!(e.message.contains("scene 2"), "{}", e.message);
    assert!(
        e.message.contains("prompt \"a cat:1:sin(\""),
        "{}",
        e.message
    );
    assert!(e.message.contains("the stop `sin(`"), "{}", e.message);
    assert!(e.message.contains("column 13"), "{}", e.message);
    let e = parse_scenes("a cat:heavy", "", "").unwrap_err();
    assert!(e.message.contains("the weight `heavy`"), "{}", e.message);
    assert!(
        e.message.contains("\n    a cat:heavy\n          ^"),
        "{}",
        e.message
    );
    let e = parse_scenes("a:1:2:3", "", "").unwrap_err();
    assert!(e.message.contains("\\:"), "{}", e.message);
    assert!(parse_scenes(" || | ", "", "").is_err());
    assert!(parse_scenes("", "", "").is_err());
}

#[test]
fn unicode_prompts() {
    let s = load("scenes = \"桜の木の下で 🌸:1.5 || Ölgemälde, Straße:0.5:-.2\"\nseed = 1");
    assert_eq!(
        s.prompts[0][0].source,
        PromptSource::Text("桜の木の下で 🌸".into())
    );
    assert_eq!(s.prompts[1][0].weight.eval(0.0, 0.0), 0.5);
    // columns are counted in characters, not bytes
    let e = parse_scenes("🌸🌸:x", "", "").unwrap_err();
    assert!(e.message.contains("column 4"), "{}", e.message);
}

#[test]
fn expressions_and_keyframes_in_settings() {
    let s = load(
        "scenes = \"a\"\nanimation_mode = \"2D\"\nzoom_x_2d = \"1 + sin(t)\"\n\
         translate_x = \"0:(0), 10:(5), 20:(t)\"\nrotate_2d = 2.5\n\
         direct_stabilization_weight = \"0.3:0.1\"\ninit_image = \"x.png\"\n\
         direct_init_weight = \"max(0, 1 - t)\"",
    );
    assert_eq!(s.motion.rotate_2d.eval(9.0, 9.0), 2.5);
    assert!((s.motion.zoom_x_2d.eval(std::f64::consts::FRAC_PI_2, 0.0) - 2.0).abs() < 1e-12);
    assert_eq!(s.motion.translate_x.eval(0.0, 5.0), 2.5);
    assert_eq!(s.motion.translate_x.eval(4.0, 15.0), 4.5);
    assert_eq!(s.motion.translate_x.eval(7.0, 99.0), 7.0);
    let w = s
        .stabilization
        .direct_stabilization_weight
        .as_ref()
        .unwrap();
    assert_eq!((w.weight.eval(0.0, 0.0), w.stop_at(0.0, 0.0)), (0.3, 0.1));
    let w = s.stabilization.direct_init_weight.as_ref().unwrap();
    assert_eq!(w.weight.eval(0.25, 0.0), 0.75);
    assert!(s
        .stabilization
        .init_image
        .as_ref()
        .unwrap()
        .ends_with("dir/x.png"));

    // errors: file line and column of the offending character, setting name
    let m = err("scenes = \"a\"\nzoom_x_2d = \"1 + sine(t)\"\n");
    assert!(
        m.starts_with("dir/test.toml:2:18: setting `zoom_x_2d`"),
        "{m}"
    );
    assert!(
        m.contains("unknown name `sine`") && m.contains("did you mean `sin`"),
        "{m}"
    );
    let m = err("scenes = \"a\"\ntranslate_y = \"0:(0), 10:(1\"\n");
    assert!(
        m.contains("setting `translate_y`") && m.contains("never closed"),
        "{m}"
    );
    let m = err("scenes = \"a\"\nrotate_2d = true\n");
    assert!(m.contains("keyframes"), "{m}");
    // float semantics, not integer division
    assert_eq!(Param::parse("1/2").unwrap().as_constant(), Some(0.5));
}

#[test]
fn one_scene_and_interpolation_edges() {
    // one scene: weight 1 everywhere, whatever the interpolation
    let s = load(
        "scenes = \"only\"\nsteps_per_scene = 100\nsteps_per_frame = 10\ninterpolation_steps = 100",
    );
    let tl = Timeline::new(&s).unwrap();
    assert_eq!((tl.total_steps(), tl.frames()), (100, 10));
    for k in 1..=10 {
        assert_eq!(tl.frame_scene_weights(k), vec![1.0]);
    }

    // interpolation 0: a hard cut at the boundary, both transitions
    for tr in ["centered", "pytti"] {
        let s = load(&format!(
            "scenes = \"a || b || c\"\nsteps_per_scene = 100\nsteps_per_frame = 10\ntransition = \"{tr}\""
        ));
        let tl = Timeline::new(&s).unwrap();
        assert_eq!(tl.scene_weights(99), vec![1.0, 0.0, 0.0]);
        assert_eq!(tl.scene_weights(100), vec![0.0, 1.0, 0.0]);
        assert_eq!(tl.scene_weights(299), vec![0.0, 0.0, 1.0]);
    }

    // interpolation = steps_per_scene, centered: fades meet, never three at once
    let s = load("scenes = \"a || b || c\"\nsteps_per_scene = 100\nsteps_per_frame = 10\ninterpolation_steps = 100");
    let tl = Timeline::new(&s).unwrap();
    assert_eq!(tl.scene_weights(0), vec![1.0, 0.0, 0.0]);
    assert_eq!(tl.scene_weights(49), vec![1.0, 0.0, 0.0]);
    assert_eq!(tl.scene_weights(50), vec![1.0, 0.0, 0.0]);
    assert_eq!(tl.scene_weights(100), vec![0.5, 0.5, 0.0]);
    assert_eq!(tl.scene_weights(150), vec![0.0, 1.0, 0.0]);
    assert_eq!(tl.scene_weights(200), vec![0.0, 0.5, 0.5]);
    assert_eq!(tl.scene_weights(299), vec![0.0, 0.0, 1.0]);
    for step in 0..300 {
        let w = tl.scene_weights(step);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(w.iter().filter(|x| **x > 0.0).count() <= 2);
    }
    // … and pytti: every later scene is a fade from start to end
    let s = load("scenes = \"a || b\"\nsteps_per_scene = 100\nsteps_per_frame = 10\ninterpolation_steps = 100\ntransition = \"pytti\"");
    let tl = Timeline::new(&s).unwrap();
    assert_eq!(tl.scene_weights(100), vec![1.0, 0.0]);
    assert_eq!(tl.scene_weights(150), vec![0.5, 0.5]);
    let w = tl.scene_weights(199);
    assert!((w[0] - 0.01).abs() < 1e-12 && (w[1] - 0.99).abs() < 1e-12);

    let m = err("scenes = \"a\"\nsteps_per_scene = 100\ninterpolation_steps = 101");
    assert!(
        m.contains("interpolation_steps") && m.contains("0 to 100"),
        "{m}"
    );
    let m = err("scenes = \"a\"\nsteps_per_scene = 75\nsteps_per_frame = 50");
    assert!(
        m.contains("not a multiple of steps_per_frame (50)")
            && m.contains("use steps_per_scene = 50 or 100"),
        "{m}"
    );
    // found by the fuzzer: the default steps_per_scene (100) against a given F
    let m = err("scenes = \"a\"\nsteps_per_frame = 40");
    assert!(
        m.contains("dir/test.toml:2:19") && m.contains("default steps_per_scene"),
        "{m}"
    );
    let m = err("scenes = \"a\"\nsteps_per_scene = 20\nsteps_per_frame = 50");
    assert!(m.contains("use steps_per_scene = 50"), "{m}");
}

#[test]
fn timeline_frames_save_every_and_pre_animation() {
    let s = load("scenes = \"a || b\"\nsteps_per_scene = 60\nsteps_per_frame = 20\nsave_every = 7\npre_animation_steps = 30\nframes_per_second = 10");
    let tl = Timeline::new(&s).unwrap();
    assert_eq!(tl.frames(), 6);
    assert_eq!(tl.frame_steps(1), 0..20);
    assert_eq!(tl.frame_steps(6), 100..120);
    assert_eq!(tl.frame_of_step(119), 6);
    assert_eq!(tl.t_at(100), 0.5);
    assert_eq!(tl.pre_animation_steps(), 30);
    assert!(tl.is_save_step(6) && !tl.is_save_step(7) && tl.is_save_step(13));
    // motion is the identity when animation is off
    assert!(tl.motion(3).is_identity());
}

#[test]
fn resolved_settings_round_trip() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenes/keyframes_orbit.toml"
    ))
    .unwrap();
    let a = Scene::from_str(&text, "scenes/keyframes_orbit.toml").unwrap();
    let written = a.to_toml().unwrap();
    let b = Scene::from_str(&written, "scenes/keyframes_orbit.toml").unwrap();
    assert_eq!(a.to_toml().unwrap(), b.to_toml().unwrap());
    assert_eq!(a.prompts, b.prompts);
    assert_eq!(b.motion.rotate_2d.eval(0.0, 30.0), 1.0);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["transition"], "pytti");
    assert_eq!(json["animation_mode"], "2D");
    assert_eq!(json["seed"], 2024);
}

#[test]
fn recorded_settings_reload_from_elsewhere() {
    let a = Scene::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenes/spring_to_winter.toml"
    ))
    .unwrap();
    a.check_files().unwrap();
    assert!(a.stabilization.init_image.as_ref().unwrap().is_absolute());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("settings.toml");
    std::fs::write(&p, a.to_toml().unwrap()).unwrap();
    let b = Scene::load(&p).unwrap();
    assert_eq!(a.stabilization.init_image, b.stabilization.init_image);
    b.check_files().unwrap();
    assert_eq!(b.optimizer.seed, 12345);
    assert_eq!(b.output.file_namespace, "spring_to_winter");
    assert_eq!(
        b.stabilization
            .direct_stabilization_weight
            .unwrap()
            .weight
            .as_constant(),
        Some(0.3)
    );
}

/// `smoothing_weight` (pytti's TV loss weight): absent or 0 is off; a number,
/// an expression in `t` or `weight:stop` is read as the other loss weights.
/// `border_mode`: pytti's five names, any case, default `mirror`.
#[test]
fn smoothing_weight_and_border_mode() {
    let s = load("scenes = \"a\"");
    assert!(s.stabilization.smoothing_weight.is_none());
    assert_eq!(s.guidance.border_mode, "mirror");
    let s = load("scenes = \"a\"\nsmoothing_weight = 0");
    assert!(s.stabilization.smoothing_weight.is_none());
    let s = load("scenes = \"a\"\nsmoothing_weight = 0.02");
    let w = s.stabilization.smoothing_weight.unwrap();
    assert_eq!(w.weight.eval(0.0, 0.0), 0.02);
    assert!(w.stop.is_none());
    let s = load("scenes = \"a\"\nsmoothing_weight = \"0.5*t:0.1\"");
    let w = s.stabilization.smoothing_weight.unwrap();
    assert_eq!(w.weight.eval(2.0, 0.0), 1.0);
    assert_eq!(w.stop.unwrap().eval(0.0, 0.0), 0.1);
    let e = err("scenes = \"a\"\nsmoothing_weight = \"smooth\"");
    assert!(e.contains("smoothing_weight"), "{e}");
    let e = err("scenes = \"a\"\nsmoothing_weight = [1]");
    assert!(e.contains("smoothing_weight"), "{e}");

    for (written, mode) in [
        ("clamp", "clamp"),
        ("mirror", "mirror"),
        ("WRAP", "wrap"),
        ("black", "black"),
        (" smear ", "smear"),
    ] {
        let s = load(&format!("scenes = \"a\"\nborder_mode = \"{written}\""));
        assert_eq!(s.guidance.border_mode, mode);
    }
    let e = err("scenes = \"a\"\nborder_mode = \"reflect\"");
    assert!(e.contains("border_mode"), "{e}");
    assert!(
        e.contains("\"clamp\", \"mirror\", \"wrap\", \"black\", \"smear\""),
        "{e}"
    );
    let e = err("scenes = \"a\"\nborder_mode = 2");
    assert!(e.contains("border_mode"), "{e}");
}

/// `cutout_augs`: pytti's augmentations on by default, `none` turns them
/// off, anything else is an error naming the setting and the choices.
/// `gradient_accumulation_steps`: 1 by default, a whole number from 1 to
/// `cutouts`.
#[test]
fn cutout_augs_and_gradient_accumulation_steps() {
    let s = load("scenes = \"a\"");
    assert_eq!(s.guidance.cutout_augs, "pytti");
    assert_eq!(s.guidance.gradient_accumulation_steps, 1);
    let s = load("scenes = \"a\"\ncutout_augs = \"None\"");
    assert_eq!(s.guidance.cutout_augs, "none");
    let s = load("scenes = \"a\"\ncutout_augs = \"PYTTI\"");
    assert_eq!(s.guidance.cutout_augs, "pytti");
    let e = err("scenes = \"a\"\ncutout_augs = \"kornia\"");
    assert!(
        e.contains("cutout_augs") && e.contains("\"kornia\"") && e.contains("\"none\""),
        "{e}"
    );
    let e = err("scenes = \"a\"\ncutout_augs = true");
    assert!(e.contains("cutout_augs"), "{e}");

    let s = load("scenes = \"a\"\ncutouts = 8\ngradient_accumulation_steps = 8");
    assert_eq!(s.guidance.gradient_accumulation_steps, 8);
    let e = err("scenes = \"a\"\ncutouts = 8\ngradient_accumulation_steps = 9");
    assert!(
        e.contains("gradient_accumulation_steps") && e.contains("at most 8"),
        "{e}"
    );
    for bad in ["0", "1.5", "\"two\"", "-1"] {
        let e = err(&format!(
            "scenes = \"a\"\ngradient_accumulation_steps = {bad}"
        ));
        assert!(e.contains("gradient_accumulation_steps"), "{bad}: {e}");
    }
}
