//! `zoetrope plan SCENE`: the dry run.
//!
//! Loads the scene exactly as `render` does (settings, prompts, expressions,
//! init image and image prompt files), compiles the [`Timeline`] and prints
//! one row per frame: as a table, JSON or CSV, optionally with a PNG chart of
//! the scene weights and motion curves. Needs no weights and no GPU.
//!
//! The header (and the JSON) also estimates the render's peak memory on
//! the CPU and on CUDA from the architectures ([`zoetrope::render::memory`]),
//! and a warning says so before anything else when the estimate exceeds
//! the memory of the device the scene picks.

use clap::{Args, ValueEnum};
use plotters::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use zoetrope::render::memory::{self, DeviceChoice, MemoryEstimate, Workload};
use zoetrope::scene::Scene;
use zoetrope::schedule::{FramePlan, PlanDocument, Timeline};
use zoetrope::tuning::Tuning;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The scene file (TOML), or a pytti YAML preset (.yaml/.yml).
    pub scene: PathBuf,
    /// Output format: a readable table, one JSON object, or CSV rows.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the scene weights (and motion, when animating, and the
    /// audio variables, with input_audio_filters) over frames into this PNG
    /// file.
    #[arg(long, value_name = "FILE.png")]
    pub chart: Option<PathBuf>,
    /// Estimate the memory with a speed or memory switch flipped, as
    /// `render --tune` would run (`zoetrope bench --help` lists them);
    /// repeatable.
    #[arg(long, value_name = "NAME=on|off")]
    pub tune: Vec<String>,
    /// Also write the camera path as a video, without any model: the init
    /// image (or a test pattern) warped frame by frame as render warps it,
    /// with frame number, t and the dominant scene drawn on it, and the
    /// soundtrack when the scene has one.
    #[arg(long, value_name = "FILE.mp4")]
    pub preview: Option<PathBuf>,
}

/// `--format` choices.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Runs the command.
pub fn run(args: &PlanArgs) -> Result<()> {
    if let Some(path) = &args.chart {
        check_chart_path(path)?;
    }
    if let Some(path) = &args.preview {
        check_preview(path)?;
    }
    let tuning = Tuning::from_specs(&args.tune)?;
    let scene = Scene::load_with(&args.scene, &zoetrope::models::WeightsLookup)?;
    for w in &scene.warnings {
        eprintln!("warning: {w}");
    }
    scene.check_files()?;
    let tl = Timeline::new(&scene)?;
    zoetrope::render::preflight::check(&scene, &tl)?;
    memory::warn_if_short(&scene, tuning, DeviceChoice::of_setting(&scene.run.device));
    let estimate = memory::estimate(&Workload::of_scene(&scene, tuning));
    let doc = PlanDocument {
        scene: &scene,
        timeline: &tl,
        memory: Some(&estimate),
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let werr = |e: std::io::Error| Error::io("writing the plan to stdout", e);
    match args.format {
        Format::Json => {
            serde_json::to_writer(&mut out, &doc)
                .map_err(|e| Error::io("writing the plan to stdout", e))?;
            writeln!(out).map_err(werr)?;
        }
        Format::Csv => write_csv(&mut out, &tl, &doc.rows())?,
        Format::Table => {
            write_table(&mut out, &scene, &tl, &estimate, &doc.rows()).map_err(werr)?
        }
    }
    out.flush().map_err(werr)?;
    drop(out);
    if let Some(path) = &args.chart {
        write_chart(path, &scene, &doc.rows())?;
        eprintln!("chart written to {}", path.display());
    }
    if let Some(path) = &args.preview {
        write_preview(&scene, &tl, path)?;
    }
    Ok(())
}

/// `--preview`'s path checks (a build without FFmpeg cannot write one).
fn check_preview(path: &Path) -> Result<()> {
    #[cfg(feature = "video")]
    {
        zoetrope::preview::check_preview_path(path)
    }
    #[cfg(not(feature = "video"))]
    {
        Err(Error::input(format!(
            "--preview {}: this zoetrope was built without FFmpeg (the `video` feature), so \
             it cannot write videos; use a build with default features",
            path.display()
        )))
    }
}

/// Writes the motion preview ([`zoetrope::preview`]).
fn write_preview(scene: &Scene, tl: &Timeline, path: &Path) -> Result<()> {
    #[cfg(feature = "video")]
    {
        // The frames are small: one libtorch thread warps them fastest, and
        // idle worker threads spinning on a busy machine cost several times
        // the work (BENCHMARKS.md). The plan is done, nothing else runs.
        tch::set_num_threads(1);
        let started = std::time::Instant::now();
        let done = zoetrope::preview::write_preview(scene, tl, path)?;
        eprintln!(
            "preview written to {} ({} frames{}, {:.1} s)",
            done.path.display(),
            done.frames,
            if done.soundtrack {
                ", with the soundtrack"
            } else {
                ""
            },
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
    #[cfg(not(feature = "video"))]
    {
        let _ = (scene, tl);
        check_preview(path)
    }
}

/// Refuses a `--chart` path that cannot work, before anything is printed:
/// another extension than `.png`, or a folder that does not exist.
fn check_chart_path(path: &Path) -> Result<()> {
    zoetrope::output::check_output_file(path, "--chart", "png", "the chart is a PNG image")
}

fn fmt_stop(stop: Option<f64>) -> String {
    match stop {
        Some(s) => format!("{s}"),
        None => "-inf".to_string(),
    }
}

fn write_csv(out: &mut impl Write, tl: &Timeline, rows: &[FramePlan]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = ["frame", "step_start", "step_end", "t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend((1..=tl.scene_count()).map(|j| format!("scene_{j}_weight")));
    header.extend(
        [
            "translate_x",
            "translate_y",
            "rotate_2d",
            "zoom_x_2d",
            "zoom_y_2d",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    header.extend(tl.audio_names().iter().cloned());
    let looping = tl.loop_frames() > 0;
    if looping {
        header.push("loop_weight".to_string());
    }
    header.push("prompts".to_string());
    let direct = rows.first().is_some_and(|r| !r.direct_images.is_empty());
    if direct {
        header.push("direct_image_prompts".to_string());
    }
    let cerr = |e: csv::Error| {
        // The message reads as csv says; an OS error (a closed pipe) stays the cause.
        let error = Error::io("writing the plan to stdout", e.to_string());
        match e.into_kind() {
            csv::ErrorKind::Io(io) => error.with_cause(io),
            _ => error,
        }
    };
    w.write_record(&header).map_err(cerr)?;
    let mut rec: Vec<String> = Vec::with_capacity(header.len());
    for r in rows {
        rec.clear();
        rec.push(r.frame.to_string());
        rec.push(r.steps[0].to_string());
        rec.push(r.steps[1].to_string());
        rec.push(r.t.to_string());
        rec.extend(r.scene_weights.iter().map(|x| x.to_string()));
        let m = &r.motion;
        for v in [
            m.translate_x,
            m.translate_y,
            m.rotate_2d,
            m.zoom_x_2d,
            m.zoom_y_2d,
        ] {
            rec.push(v.to_string());
        }
        rec.extend(r.audio.0.iter().map(|(_, v)| v.to_string()));
        if looping {
            rec.push(r.loop_weight.unwrap_or(0.0).to_string());
        }
        // scene:weight:stop:text — text last, so colons in it stay readable
        let prompts: Vec<String> = r
            .prompts
            .iter()
            .map(|p| {
                format!(
                    "{}:{}:{}:{}",
                    p.scene + 1,
                    p.weight,
                    fmt_stop(p.stop),
                    p.text
                )
            })
            .collect();
        rec.push(prompts.join(" | "));
        if direct {
            // weight:stop:path, as the prompts
            let images: Vec<String> = r
                .direct_images
                .iter()
                .map(|d| format!("{}:{}:{}", d.weight, fmt_stop(d.stop), d.path))
                .collect();
            rec.push(images.join(" | "));
        }
        w.write_record(&rec).map_err(cerr)?;
    }
    w.flush()
        .map_err(|e| Error::io("writing the plan to stdout", e))?;
    Ok(())
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn write_table(
    out: &mut impl Write,
    scene: &Scene,
    tl: &Timeline,
    estimate: &MemoryEstimate,
    rows: &[FramePlan],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} scene(s), {} frames × {} steps = {} steps at {} fps ({:.2} s of video), {}×{} px, \
         transition {:?}, interpolation {} steps, seed {}",
        scene.origin,
        tl.scene_count(),
        tl.frames(),
        tl.steps_per_frame(),
        tl.total_steps(),
        scene.timing.frames_per_second,
        tl.frames() as f64 / scene.timing.frames_per_second,
        scene.image.width,
        scene.image.height,
        scene.timing.transition,
        scene.timing.interpolation_steps,
        scene.optimizer.seed
    )?;
    writeln!(out, "{}", estimate.summary())?;
    if scene.seed_was_random {
        writeln!(
            out,
            "(seed drawn at random for this run; set seed = {} to repeat it)",
            scene.optimizer.seed
        )?;
    }
    if tl.pre_animation_steps() > 0 {
        writeln!(
            out,
            "{} pre-animation steps on scene 1 before frame 1",
            tl.pre_animation_steps()
        )?;
    }
    writeln!(
        out,
        "snapshots every {} steps; frames written after their last step",
        tl.save_every()
    )?;
    write_audio_summary(out, scene, tl)?;
    for (j, s) in scene.prompts.iter().enumerate() {
        let list: Vec<&str> = s.iter().map(|p| p.raw.as_str()).collect();
        writeln!(out, "scene {}: {}", j + 1, list.join(" | "))?;
    }
    writeln!(out)?;
    write_frame_rows(out, scene, tl, rows)
}

/// The soundtrack's line of the summary: the file, the offset, how many
/// frames have audio and each filter's band.
fn write_audio_summary(out: &mut impl Write, scene: &Scene, tl: &Timeline) -> std::io::Result<()> {
    let (Some(path), Some(track)) = (&scene.audio.input_audio, scene.audio.reactivity()) else {
        return Ok(());
    };
    let video_s = tl.frames() as f64 / scene.timing.frames_per_second;
    let after = (track.duration() - track.offset()).max(0.0);
    writeln!(
        out,
        "audio: {} from {} s ({:.2} s of it under the video's {:.2} s; frames 1–{} have audio, \
         later frames read 0)",
        path.display(),
        track.offset(),
        after.min(video_s),
        video_s,
        (track.frames_with_audio() as u64).min(tl.frames())
    )?;
    for f in &scene.audio.input_audio_filters {
        let (lo, hi) = f.band();
        writeln!(
            out,
            "  {}: {lo}–{hi} Hz band-pass, order {}",
            f.variable_name, f.order
        )?;
    }
    Ok(())
}

/// The per-frame table under the summary: a note on motion when animated,
/// the column heads, then one line per frame.
fn write_frame_rows(
    out: &mut impl Write,
    scene: &Scene,
    tl: &Timeline,
    rows: &[FramePlan],
) -> std::io::Result<()> {
    let animated = scene.is_animated();
    let multi = tl.scene_count() > 1;
    if animated {
        writeln!(
            out,
            "motion (tx ty rot zoom_x zoom_y) is evaluated at each frame's start and warps the \
             previous frame into it (frame 1 starts unwarped)"
        )?;
    }
    if tl.loop_frames() > 0 {
        writeln!(
            out,
            "loop: the weight of the pull toward frame 1 as the coming motion carries it back \
             (loop_frames = {}, docs/scene-format.md \"Seamless loops\")",
            tl.loop_frames()
        )?;
    }
    let mut head = format!("{:>6}  {:>15}  {:>8}", "frame", "steps", "t (s)");
    for j in 1..=tl.scene_count() {
        head.push_str(&format!("  {:>6}", format!("w{j}")));
    }
    if animated {
        head.push_str(&format!(
            "  {:>7} {:>7} {:>7} {:>7} {:>7}",
            "tx", "ty", "rot", "zoom_x", "zoom_y"
        ));
    }
    for name in tl.audio_names() {
        head.push_str(&format!("  {:>6}", short(name, 6)));
    }
    if tl.loop_frames() > 0 {
        head.push_str(&format!("  {:>7}", "loop"));
    }
    head.push_str(if multi {
        "  prompts (scene:text effective weight)"
    } else {
        "  prompts (effective weight)"
    });
    writeln!(out, "{head}")?;
    for r in rows {
        writeln!(out, "{}", frame_row(r, animated, multi))?;
    }
    Ok(())
}

/// One frame's line of the table: steps, time, scene weights, motion (when
/// animated) and the prompts with their effective weights.
fn frame_row(r: &FramePlan, animated: bool, multi: bool) -> String {
    let mut line = format!(
        "{:>6}  {:>15}  {:>8.3}",
        r.frame,
        format!("{}–{}", r.steps[0], r.steps[1] - 1),
        r.t
    );
    for w in &r.scene_weights {
        line.push_str(&format!("  {w:>6.3}"));
    }
    if animated {
        let m = &r.motion;
        line.push_str(&format!(
            "  {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            m.translate_x, m.translate_y, m.rotate_2d, m.zoom_x_2d, m.zoom_y_2d
        ));
    }
    for (_, v) in &r.audio.0 {
        line.push_str(&format!("  {v:>6.3}"));
    }
    if let Some(w) = r.loop_weight {
        line.push_str(&format!("  {w:>7.3}"));
    }
    let prompts: Vec<String> = r
        .prompts
        .iter()
        .map(|p| {
            let text = if p.kind == "image" {
                format!("[{}]", short(&p.text, 24))
            } else {
                short(&p.text, 28)
            };
            let tag = if multi {
                format!("{}:", p.scene + 1)
            } else {
                String::new()
            };
            let mask = match (p.mask.as_str(), p.mask_threshold) {
                ("a", _) => String::new(),
                (m, Some(th)) => format!(" (mask {} at {th:.3})", short(m, 20)),
                (m, None) => format!(" (mask {})", short(m, 20)),
            };
            match p.stop {
                Some(s) => format!("{tag}{text} {:+.3} (stop {s}){mask}", p.weight),
                None => format!("{tag}{text} {:+.3}{mask}", p.weight),
            }
        })
        .collect();
    let direct = r.direct_images.iter().map(|d| {
        let name = Path::new(&d.path)
            .file_name()
            .map_or(d.path.clone(), |n| n.to_string_lossy().into_owned());
        match d.stop {
            Some(s) => format!("direct [{}] {:+.3} (stop {s})", short(&name, 24), d.weight),
            None => format!("direct [{}] {:+.3}", short(&name, 24), d.weight),
        }
    });
    let prompts: Vec<String> = prompts.into_iter().chain(direct).collect();
    line.push_str("  ");
    line.push_str(&prompts.join("; "));
    line
}

/// Reads one motion value of a frame.
type MotionGetter = fn(&FramePlan) -> f64;

/// The chart's error, as a message that names the file and what to do.
fn chart_error<E: std::error::Error + Send + Sync>(
    path: &Path,
    e: DrawingAreaErrorKind<E>,
) -> Error {
    let what = format!("--chart {}: could not draw the chart", path.display());
    let text = e.to_string();
    // plotters does not re-export its backend's error kinds; a font that
    // cannot be loaded says "font" in its message.
    if text.to_ascii_lowercase().contains("font") {
        Error::io(
            what,
            format!(
                "{text}; install fontconfig and a sans-serif font such as DejaVu Sans, or \
                 leave out --chart"
            ),
        )
    } else {
        Error::internal(format!("{what}: {text}"))
    }
}

/// Draws the chart ([`draw_chart`]) into memory, encodes it as PNG and
/// writes it through the project's atomic writer: a failure leaves no
/// partial file behind, and an earlier chart at `path` as it was.
fn write_chart(path: &Path, scene: &Scene, rows: &[FramePlan]) -> Result<()> {
    let audio = rows.first().is_some_and(|r| !r.audio.is_empty());
    let height = 450 + if scene.is_animated() { 350 } else { 0 } + if audio { 330 } else { 0 };
    let width = 1200u32;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    draw_chart(&mut rgb, (width, height), scene, rows).map_err(|e| chart_error(path, e))?;
    let img = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| Error::internal("the chart's pixel buffer has the wrong size"))?;
    zoetrope::output::frames::write_png_atomic(path, &img).map_err(|e| Error {
        message: format!(
            "--chart: {}; the chart was not written (an earlier file there is unchanged): \
             check that the folder is writable and has space",
            e.message
        ),
        ..e
    })
}

/// What drawing the chart into a pixel buffer can fail with.
type ChartError<'a> = DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;
/// A part of the chart's pixel buffer.
type ChartArea<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
/// A chart over the frames of a plan (x: frame number).
type FrameChart<'b, 'a> = ChartContext<
    'b,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart on `area` over `frames` frames (x from 0.5 to frames + 0.5) with
/// values `y`, its caption in `font` size and a mesh with "frame" under it.
fn frame_chart<'b, 'a>(
    area: &'b ChartArea<'a>,
    caption: String,
    font: u32,
    frames: usize,
    y: std::ops::Range<f64>,
) -> std::result::Result<FrameChart<'b, 'a>, ChartError<'a>> {
    let n = frames.max(1) as f64;
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", font))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, y)
}

/// The chart's legend at `position`.
fn draw_legend<'b, 'a: 'b>(
    chart: &mut FrameChart<'b, 'a>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), ChartError<'a>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .label_font(("sans-serif", 15))
        .draw()
}

/// Scene weights over frames (top), motion curves when animating, and the
/// audio variables when the scene has filters, stacked into an RGB pixel
/// buffer of `size`.
fn draw_chart<'a>(
    rgb: &'a mut [u8],
    size: (u32, u32),
    scene: &Scene,
    rows: &[FramePlan],
) -> std::result::Result<(), ChartError<'a>> {
    let animated = scene.is_animated();
    let audio = rows.first().is_some_and(|r| !r.audio.is_empty());
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE)?;
    if !animated && !audio {
        draw_weights(&root, scene, rows)?;
        root.present()?;
        return Ok(());
    }
    let (top, rest) = root.split_vertically(420);
    draw_weights(&top, scene, rows)?;
    let (motion, audio_area) = match (animated, audio) {
        (true, true) => {
            let (a, b) = rest.split_vertically(350);
            (Some(a), Some(b))
        }
        (true, false) => (Some(rest), None),
        (false, true) => (None, Some(rest)),
        (false, false) => (None, None),
    };
    if let Some(area) = motion {
        draw_motion(&area, rows)?;
    }
    if let Some(area) = audio_area {
        draw_audio(&area, rows)?;
    }
    root.present()?;
    Ok(())
}

/// The audio variables per frame (0..1), one line per filter.
fn draw_audio<'a>(
    area: &ChartArea<'a>,
    rows: &[FramePlan],
) -> std::result::Result<(), ChartError<'a>> {
    let caption = "audio variables per frame (band level / loudest frame's)".to_string();
    let mut chart = frame_chart(area, caption, 20, rows.len(), -0.02..1.05)?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let names: Vec<String> = rows
        .first()
        .map(|r| r.audio.0.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i + 3).to_rgba();
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.frame as f64, r.audio.0[i].1)),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The mean weight of each scene per frame, with a legend naming the scenes
/// by their first prompt.
fn draw_weights<'a>(
    top: &ChartArea<'a>,
    scene: &Scene,
    rows: &[FramePlan],
) -> std::result::Result<(), ChartError<'a>> {
    let name = Path::new(&scene.origin)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let caption = format!(
        "{name}: scene weights per frame ({:?} transition)",
        scene.timing.transition
    );
    let mut chart = frame_chart(top, caption, 22, rows.len(), -0.02..1.05)?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("mean scene weight")
        .draw()?;
    for j in 0..scene.prompts.len() {
        let color = Palette99::pick(j).to_rgba().stroke_width(3);
        let label = scene.prompts[j]
            .first()
            .map(|p| short(&p.raw, 48))
            .unwrap_or_default();
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.frame as f64, r.scene_weights[j])),
                color,
            ))?
            .label(format!("scene {}: {label}", j + 1))
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    Palette99::pick(j).stroke_width(3),
                )
            });
    }
    draw_legend(&mut chart, SeriesLabelPosition::MiddleLeft)
}

/// The 2D motion settings per frame, on one axis.
fn draw_motion<'a>(
    bottom: &ChartArea<'a>,
    rows: &[FramePlan],
) -> std::result::Result<(), ChartError<'a>> {
    let series: [(&str, MotionGetter); 5] = [
        ("translate_x", |r| r.motion.translate_x),
        ("translate_y", |r| r.motion.translate_y),
        ("rotate_2d", |r| r.motion.rotate_2d),
        ("zoom_x_2d", |r| r.motion.zoom_x_2d),
        ("zoom_y_2d", |r| r.motion.zoom_y_2d),
    ];
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for r in rows {
        for (_, g) in &series {
            let v = g(r);
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    let caption = "2D motion per frame (pixels, degrees)".to_string();
    let mut chart = frame_chart(bottom, caption, 20, rows.len(), (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, (label, g)) in series.iter().enumerate() {
        let c = colors[i];
        // dashed-looking offset is not needed: zoom_x and zoom_y often
        // coincide, so y is drawn thinner on top of x.
        let width = if i == 4 { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.frame as f64, g(r))),
                c.stroke_width(width),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}
