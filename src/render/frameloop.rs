//! The frame loop: the render itself.
//!
//! For every frame `k` (1-based) of the [`Timeline`]:
//!
//! 1. from frame 2 on, when animating, the previous frame is decoded, warped by
//!    the frame's motion (docs/design.md §5) and re-encoded (`reencode_each_frame`), or
//!    the latent grid itself is warped; the warped frame becomes the
//!    stabilisation target (docs/design.md §6), and Adam is reset (`reset_lr_each_frame`);
//!    in the last `loop_frames` frames the first frame, carried back through
//!    the motion still to come, is the loop-closing target ([`loop_close`]);
//! 2. the frame's `steps_per_frame` optimisation steps run ([`Guide::step`]),
//!    each with the scene weights and prompt weights of its own step;
//! 3. the frame is written as `frame_NNNNN.png`, appended to the MP4, and the
//!    state needed to continue (the optimised tensor, Adam's moments) is saved
//!    atomically.
//!
//! # Determinism and resume
//!
//! Every frame draws from a generator ([`Rng`]) seeded from the run's seed and
//! the frame number, so a frame's random draws (cutouts, noise) do not depend
//! on how the process got there. The state saved after frame `k` is
//! everything the next frame reads, so `render --resume DIR` after a crash
//! (even `kill -9`) reproduces exactly the frames an uninterrupted run makes on
//! the same device. Work done inside the interrupted frame is redone.

use crate::guidance::adam::Adam;
use crate::guidance::augment::AugmentConfig;
use crate::guidance::cutouts::{BorderFill, CutoutSampler};
use crate::guidance::guide::{Guide, Perceptor, StepWeights, Target};
use crate::guidance::image::{ImageModel, ImageState};
use crate::guidance::loss::WeightStop;
use crate::guidance::palette::{LimitedPalette, PaletteConfig};
use crate::models::clip::Clip;
use crate::models::vqgan::Vqgan;
use crate::models::weights::{self, ModelKind};
use crate::models::ModelOptions;
use crate::output::frames::{load_image, tensor_to_rgb, write_frame, write_png_atomic};
use crate::output::run_dir::RunDir;
use crate::output::write_json_atomic;
use crate::render::device::{apply_device_switches, resolve_device, resolve_precision};
use crate::render::loop_close;
use crate::render::progress::Reporter;
use crate::render::warp;
use crate::rng::Rng;
use crate::scene::prompt::WeightSpec;
use crate::scene::{self, Scene, StabilizationTarget};
use crate::schedule::Timeline;
use crate::tuning::Tuning;
use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// File names inside a run folder.
pub const SETTINGS_FILE: &str = "settings.toml";
pub const SCHEDULE_FILE: &str = "schedule.json";
pub const METADATA_FILE: &str = "metadata.json";
pub const STATE_FILE: &str = "state.json";
/// The tensors that continue a run after frame `frame`: one file per frame,
/// so that the JSON written after it always names tensors of its own frame.
pub fn state_tensors_file(frame: u64) -> String {
    format!("state_{frame:05}.safetensors")
}

/// True for the resume-state files of a run folder (`state.json` and the
/// per-frame tensors).
pub fn is_state_file(name: &str) -> bool {
    name == STATE_FILE
        || (name.starts_with("state_") && name.ends_with(".safetensors"))
        || name.ends_with(".safetensors.tmp")
}

/// True for the files a render writes besides its frames and video (the
/// state files and the JSON and TOML records), which a new render into the
/// folder removes ([`RunDir::remove_run_files`]).
fn is_run_file(name: &str) -> bool {
    is_state_file(name) || [SETTINGS_FILE, SCHEDULE_FILE, METADATA_FILE].contains(&name)
}
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Where `show_palette` writes the Limited Palette's palettes.
pub const PALETTE_DIR: &str = "palettes";

/// How a render reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bars on a terminal, periodic lines otherwise.
    Auto,
    /// Plain log lines, one per frame.
    Lines,
    /// Nothing but errors.
    Quiet,
}

/// Options of one render that are not scene settings.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Folder that receives `<file_namespace>/`.
    pub out_dir: PathBuf,
    pub progress: Progress,
    /// Set (by a Ctrl-C handler) to stop cleanly after the current step.
    pub interrupt: Arc<AtomicBool>,
    /// The speed switches (`render --tune`); recorded in `metadata.json` and
    /// the run's state. `None`: the defaults for a new render, and for a
    /// resumed one the switches it was started with (so a run started with
    /// `deterministic=on` resumes deterministic).
    pub tuning: Option<Tuning>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            out_dir: PathBuf::from("out"),
            progress: Progress::Auto,
            interrupt: Arc::new(AtomicBool::new(false)),
            tuning: None,
        }
    }
}

/// What a finished (or cleanly interrupted) render produced.
#[derive(Debug, Clone)]
pub struct RenderSummary {
    pub run_dir: PathBuf,
    pub frames_written: u64,
    pub total_frames: u64,
    pub video: Option<PathBuf>,
}

/// The resume state written after every frame (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// zoetrope version that wrote it.
    pub version: String,
    /// Frames completed (1-based index of the last written frame).
    pub frames_done: u64,
    pub total_frames: u64,
    pub seed: u64,
    /// Adam's step counter at the end of the frame.
    pub adam_step: i64,
    /// The folder relative paths of the scene were resolved against.
    pub scene_dir: PathBuf,
    /// The scene file the run was started from.
    pub scene_file: PathBuf,
    /// Per-frame records so far.
    pub frames: Vec<FrameRecord>,
    /// True once the last frame and the MP4 are written.
    pub complete: bool,
    /// The speed switches the run was started with (`Tuning::describe`);
    /// absent in state files written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_switches: Option<String>,
}

/// One frame's measurements, kept in the metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameRecord {
    pub frame: u64,
    /// Loss of the frame's last step.
    pub loss: f64,
    /// Seconds spent on the frame (warp, steps and writing).
    pub seconds: f64,
}

/// Renders a scene file into a new run folder under `opts.out_dir`.
pub fn render_file(scene_path: &Path, opts: &RenderOptions) -> Result<RenderSummary> {
    let scene = Scene::load_with(scene_path, &crate::models::WeightsLookup)?;
    if opts.progress != Progress::Quiet {
        for w in &scene.warnings {
            eprintln!("warning: {w}");
        }
    }
    scene.check_files()?;
    // Everything the plan checks, before any model loads or a folder is made.
    crate::render::preflight::check(&scene, &Timeline::new(&scene)?)?;
    let run = RunDir::create(
        &opts.out_dir,
        &scene.output.file_namespace,
        scene.output.allow_overwrite,
    )?;
    let scene_dir = scene_dir_of(scene_path);
    let scene_file = std::path::absolute(scene_path).unwrap_or_else(|_| scene_path.to_path_buf());
    render_in(&scene, &scene_file, &scene_dir, run.clone(), false, opts).inspect_err(|_| {
        // A start that failed before its first frame's state leaves nothing
        // to resume: its files go, and so does the folder if that empties it,
        // so the next attempt takes the same name. (An earlier run the
        // render would have overwritten still has its state.json and stays.)
        if !run.path.join(STATE_FILE).exists() {
            let _ = run.remove_run_files(STATE_FILE, is_run_file);
            run.remove_if_empty();
        }
    })
}

/// Continues the run in `run_dir` where it stopped.
pub fn resume(run_dir: &Path, opts: &RenderOptions) -> Result<RenderSummary> {
    let run = RunDir::open(run_dir)?;
    let state = read_state(&run.path)?.ok_or_else(|| {
        Error::input(format!(
            "{} holds no {STATE_FILE}: it is not a zoetrope run folder, or the run stopped \
             before its first frame; start it again with `zoetrope render SCENE`",
            run.path.display()
        ))
    })?;
    let settings_path = run.path.join(SETTINGS_FILE);
    let text = std::fs::read_to_string(&settings_path)
        .map_err(|e| Error::io(format!("reading {}", settings_path.display()), e))?;
    // Image prompts keep their paths as written, relative to the scene
    // file's folder, so the settings are read as if from the scene file.
    let scene = Scene::from_str_with(
        &text,
        &state.scene_file.display().to_string(),
        &crate::models::WeightsLookup,
    )
    .map_err(|e| e.context(format!("resuming from {}", settings_path.display())))?;
    if state.complete {
        eprintln!(
            "{} is already complete ({} frames); nothing to do",
            run.path.display(),
            state.total_frames
        );
        return Ok(RenderSummary {
            run_dir: run.path.clone(),
            frames_written: state.frames_done,
            total_frames: state.total_frames,
            video: Some(run.video_path()).filter(|p| p.exists()),
        });
    }
    let scene_file = state.scene_file.clone();
    let scene_dir = state.scene_dir.clone();
    render_in(&scene, &scene_file, &scene_dir, run, true, opts)
}

fn scene_dir_of(scene_path: &Path) -> PathBuf {
    let dir = scene_path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn read_state(dir: &Path) -> Result<Option<RunState>> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::input(format!(
            "{} is damaged ({e}); the run cannot be resumed",
            path.display()
        ))
    })
}

/// The models a scene needs, loaded on `device` in `kind`.
pub struct LoadedModels {
    pub perceptors: Vec<Perceptor>,
    pub image_model: ImageModel,
    /// `(model name, weights file)` of every file used, for the metadata.
    pub files: Vec<(String, PathBuf)>,
}

/// Resolves and loads every model of `scene` with the model-level switches
/// `options`, reporting all missing weights at once.
pub fn load_models(
    scene: &Scene,
    device: Device,
    kind: Kind,
    options: ModelOptions,
) -> Result<LoadedModels> {
    let mut missing = Vec::new();
    let mut clip_paths = Vec::new();
    for name in &scene.guidance.perceptors {
        match weights::resolve(ModelKind::Clip, name) {
            Ok(p) => clip_paths.push((name.clone(), p)),
            Err(e) => missing.push(e.message),
        }
    }
    let vqgan_path = if scene.image.image_model == scene::ImageModel::Vqgan {
        let name = scene.image.vqgan_model.name();
        match weights::resolve(ModelKind::Vqgan, name) {
            Ok(p) => Some((name.to_string(), p)),
            Err(e) => {
                missing.push(e.message);
                None
            }
        }
    } else {
        None
    };
    if !missing.is_empty() {
        return Err(Error::weights(missing.join("\n")));
    }
    let mut files = Vec::new();
    let mut perceptors = Vec::new();
    for (name, path) in clip_paths {
        let clip = Clip::load_with(&path, device, kind, options)?;
        let mut sampler = CutoutSampler::new(
            scene.guidance.cutouts as usize,
            scene.guidance.cut_pow,
            scene.guidance.cutout_border,
            clip.input_resolution(),
        )?;
        sampler.fill = BorderFill::from_name(&scene.guidance.border_mode, "border_mode")?;
        sampler.augment = match scene.guidance.cutout_augs.as_str() {
            "none" => None,
            _ => Some(AugmentConfig::pytti_classic()),
        };
        perceptors.push(Perceptor {
            name: name.clone(),
            clip,
            sampler,
        });
        files.push((name, path));
    }
    let image_model = match vqgan_path {
        Some((name, path)) => {
            let vqgan = Vqgan::load_with(&path, device, kind, options)?;
            files.push((name, path));
            ImageModel::Vqgan(vqgan)
        }
        None if scene.image.image_model == scene::ImageModel::LimitedPalette => {
            limited_palette(scene, device)?
        }
        None => ImageModel::Palette,
    };
    Ok(LoadedModels {
        perceptors,
        image_model,
        files,
    })
}

/// The Limited Palette of `scene`, with its `target_palette` image loaded
/// at the render size on `device`.
fn limited_palette(scene: &Scene, device: Device) -> Result<ImageModel> {
    let p = &scene.image.palette;
    let model = LimitedPalette::new(PaletteConfig {
        palette_size: p.palette_size as i64,
        palettes: p.palettes as i64,
        gamma: p.gamma,
        hdr_weight: p.hdr_weight,
        norm_weight: p.palette_normalization_weight,
        random_initial_palette: p.random_initial_palette,
        lock_palette: p.lock_palette,
    })?;
    let target = match &p.target_palette {
        Some(path) => Some(
            load_image(path, scene.image.width, scene.image.height)
                .map_err(|e| {
                    Error::input(format!(
                        "{}: setting `target_palette`: {}",
                        scene.origin, e.message
                    ))
                })?
                .f_to_device(device)?,
        ),
        None => None,
    };
    Ok(ImageModel::LimitedPalette { model, target })
}

fn frame_seed(seed: u64, frame: u64) -> u64 {
    // splitmix64 of (seed, frame): independent streams per frame.
    let mut z = seed
        .wrapping_add(frame.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // Below 2^63, as when it seeded `tch::manual_seed` (an i64).
    (z ^ (z >> 31)) >> 1
}

fn precision_name(p: scene::Precision) -> &'static str {
    match p {
        scene::Precision::Auto => "auto",
        scene::Precision::Fp32 => "fp32",
        scene::Precision::Bf16 => "bf16",
    }
}

/// Turns a torch failure during the render into a message a user can act on.
/// An out-of-memory error explained for the person at the terminal (other
/// errors pass unchanged): what ran out and during what, the settings that
/// drive the memory a render needs, and what the run folder keeps
/// (`frames_done` frames and their state, which `--resume` continues from).
fn explain_out_of_memory(
    e: Error,
    during: &str,
    scene: &Scene,
    device: Device,
    folder: &Path,
    frames_done: u64,
) -> Error {
    if e.kind != ErrorKind::OutOfMemory {
        return e;
    }
    let memory = match device {
        Device::Cpu => "memory (RAM)".to_string(),
        d => format!("GPU memory ({d:?})"),
    };
    let kept = if frames_done == 0 {
        "No frame was finished, so there is nothing to resume.".to_string()
    } else {
        format!(
            "Frames 1–{frames_done} and the state to continue are saved: once more memory is \
             free, `zoetrope render --resume {}` carries on from frame {} with the same settings.",
            folder.display(),
            frames_done + 1
        )
    };
    Error::new(
        ErrorKind::OutOfMemory,
        format!(
            "out of {memory} while {during} ({}).\nWhat a render needs grows with width × \
             height (now {}×{}), cutouts (now {} per perceptor) and the perceptors (now {}): \
             lower them, or try `--tune checkpoint-perceptors=on` (recomputes the ViT \
             blocks in the backward pass instead of keeping their activations), or free \
             memory other programs hold; `zoetrope plan` estimates the need.\n{kept}",
            e.message,
            scene.image.width,
            scene.image.height,
            scene.guidance.cutouts,
            scene.guidance.perceptors.join(", "),
        ),
    )
}

/// The MP4 being written, when the binary has the video feature.
struct Video {
    #[cfg(feature = "video")]
    writer: Option<crate::output::video::Mp4Writer>,
}

impl Video {
    fn open(run: &RunDir, scene: &Scene, width: u32, height: u32) -> Result<Video> {
        #[cfg(feature = "video")]
        {
            let comment = format!(
                "zoetrope {} | scenes: {}{}{}",
                env!("CARGO_PKG_VERSION"),
                scene.text.scene_prefix,
                scene.text.scenes,
                scene.text.scene_suffix
            );
            // The soundtrack (docs/design.md §12) from input_audio_offset on;
            // the writer cuts it to the frames pushed, so a resumed run,
            // which pushes the frames on disk first, has the same sound.
            let soundtrack = scene.audio.reactivity().map(|a| a.soundtrack());
            let writer = crate::output::video::Mp4Writer::create_with_soundtrack(
                &run.video_path(),
                width,
                height,
                scene.timing.frames_per_second,
                &[("comment", &comment)],
                soundtrack.as_ref(),
            )?;
            Ok(Video {
                writer: Some(writer),
            })
        }
        #[cfg(not(feature = "video"))]
        {
            let _ = (run, scene, width, height);
            Ok(Video {})
        }
    }

    fn push(&mut self, img: &image::RgbImage) -> Result<()> {
        #[cfg(feature = "video")]
        if let Some(w) = &mut self.writer {
            w.push_frame(img)?;
        }
        #[cfg(not(feature = "video"))]
        let _ = img;
        Ok(())
    }

    fn finish(&mut self) -> Result<Option<PathBuf>> {
        #[cfg(feature = "video")]
        if let Some(w) = self.writer.take() {
            return w.finish().map(Some);
        }
        #[cfg(not(feature = "video"))]
        let _ = self;
        Ok(None)
    }
}

/// What a finished render records in `metadata.json`. The fields are in the
/// order of their names: the file was written from a JSON map, which sorts
/// its keys, and keeps that form.
#[derive(Debug, Clone, Serialize)]
pub struct RunMetadata {
    pub device: String,
    pub frames: Vec<FrameRecord>,
    /// libtorch's allocator peaks over this session, MiB (CUDA only).
    pub gpu_peak_allocated_mib: Option<f64>,
    pub gpu_peak_reserved_mib: Option<f64>,
    pub precision: String,
    pub resumed: bool,
    pub scene_file: String,
    pub seed: u64,
    /// The speed switches (`Tuning::describe`).
    pub speed_switches: String,
    pub total_seconds_this_session: f64,
    pub video: Option<String>,
    pub weights: Vec<WeightFile>,
    pub zoetrope_version: String,
}

/// One weights file a render used, in [`RunMetadata`] (fields in name order).
#[derive(Debug, Clone, Serialize)]
pub struct WeightFile {
    pub file: String,
    pub model: String,
    /// From the file's `.sha256` sidecar, when it has one.
    pub sha256: Option<String>,
    /// Made by `zoetrope weights tiny`.
    pub untrained: bool,
}

/// Everything a render settles before any model loads: the timeline, the
/// device and compute kind, the state of the run it resumes and the speed
/// switches (applied to the device here).
struct RunSetup<'a> {
    scene: &'a Scene,
    scene_file: &'a Path,
    scene_dir: &'a Path,
    run: RunDir,
    resuming: bool,
    timeline: Timeline,
    device: Device,
    kind: Kind,
    previous: Option<RunState>,
    tuning: Tuning,
    started: Instant,
}

impl<'a> RunSetup<'a> {
    fn new(
        scene: &'a Scene,
        scene_file: &'a Path,
        scene_dir: &'a Path,
        run: RunDir,
        resuming: bool,
        opts: &RenderOptions,
    ) -> Result<RunSetup<'a>> {
        let timeline = Timeline::new(scene)?;
        crate::render::preflight::check(scene, &timeline)?;
        let device = resolve_device(&scene.run.device)?;
        let kind = resolve_precision(precision_name(scene.run.precision), device)?;
        let previous = if resuming {
            read_state(&run.path)?
        } else {
            None
        };
        let started = Instant::now();
        // The speed switches measured in BENCHMARKS.md: --tune, else the
        // resumed run's own, else the defaults.
        let tuning = match opts.tuning {
            Some(tuning) => tuning,
            None => recorded_tuning(previous.as_ref(), &run)?.unwrap_or_default(),
        };
        apply_device_switches(&tuning, device);
        // Before anything loads: say so when the estimate exceeds the device.
        crate::render::memory::warn_if_short(
            scene,
            tuning,
            match device {
                Device::Cuda(i) => crate::render::memory::DeviceChoice::Cuda(i),
                _ => crate::render::memory::DeviceChoice::Cpu,
            },
        );
        Ok(RunSetup {
            scene,
            scene_file,
            scene_dir,
            run,
            resuming,
            timeline,
            device,
            kind,
            previous,
            tuning,
            started,
        })
    }

    /// Frames the resumed run had finished (0 for a new run).
    fn done_before(&self) -> u64 {
        self.previous.as_ref().map_or(0, |p| p.frames_done)
    }

    /// Out of memory explained: what ran out, `during` what, the settings
    /// that drive it, and what the run folder keeps after `frames_done`.
    fn oom(&self, during: impl Into<String>, frames_done: u64) -> impl FnOnce(Error) -> Error + 'a {
        let (during, scene, device) = (during.into(), self.scene, self.device);
        let folder = self.run.path.clone();
        move |e: Error| explain_out_of_memory(e, &during, scene, device, &folder, frames_done)
    }

    /// `state.json` after `frames_done` frames (per frame, and once complete).
    fn run_state(
        &self,
        frames_done: u64,
        adam_step: i64,
        records: &[FrameRecord],
        complete: bool,
    ) -> RunState {
        RunState {
            version: env!("CARGO_PKG_VERSION").to_string(),
            frames_done,
            total_frames: self.timeline.frames(),
            seed: self.scene.optimizer.seed,
            adam_step,
            scene_dir: self.scene_dir.to_path_buf(),
            scene_file: self.scene_file.to_path_buf(),
            frames: records.to_vec(),
            complete,
            speed_switches: Some(self.tuning.describe()),
        }
    }
}

/// The switches an interrupted run recorded in its state, if any; names
/// this build lacks are left out with a warning.
fn recorded_tuning(previous: Option<&RunState>, run: &RunDir) -> Result<Option<Tuning>> {
    let Some(specs) = previous.and_then(|p| p.speed_switches.as_deref()) else {
        return Ok(None);
    };
    let state_file = run.path.join(STATE_FILE);
    let (tuning, unknown) = Tuning::from_recorded(specs).map_err(|e| {
        e.context(format!(
            "the speed switches recorded in {} (resume with --tune NAME=on|off to use \
             the defaults and those switches instead)",
            state_file.display()
        ))
    })?;
    if !unknown.is_empty() {
        eprintln!(
            "warning: {} records speed switches this build does not have ({}); \
             resuming without them (they change speed and memory, not the result)",
            state_file.display(),
            unknown.join(", ")
        );
    }
    Ok(Some(tuning))
}

/// Loads the models with the run's switches and embeds the prompts: the
/// guide, the image model and the weights files for the metadata.
fn load_guide(
    setup: &RunSetup,
    opts: &RenderOptions,
) -> Result<(Guide, ImageModel, Vec<WeightFile>)> {
    let (scene, tuning, done_before) = (setup.scene, setup.tuning, setup.done_before());
    let options = ModelOptions::of_tuning(&tuning);
    let models = load_models(scene, setup.device, setup.kind, options)
        .map_err(setup.oom("loading the models", done_before))?;
    if tuning.channels_last {
        for p in &models.perceptors {
            p.clip.make_channels_last()?;
        }
        if let ImageModel::Vqgan(v) = &models.image_model {
            v.make_channels_last()?;
        }
    }
    let weight_files: Vec<WeightFile> = models
        .files
        .iter()
        .map(|(name, path)| WeightFile {
            file: path.display().to_string(),
            model: name.clone(),
            sha256: weights::read_sidecar(path),
            untrained: crate::models::tiny::is_untrained(path),
        })
        .collect();
    let untrained: Vec<&str> = models
        .files
        .iter()
        .filter(|(_, p)| crate::models::tiny::is_untrained(p))
        .map(|(n, _)| n.as_str())
        .collect();
    if !untrained.is_empty() && opts.progress != Progress::Quiet {
        eprintln!(
            "note: {} untrained (generated by `zoetrope weights tiny`): the render runs end \
             to end, but its imagery is abstract",
            untrained.join(" and ")
        );
    }
    let mut guide = Guide::new(
        models.perceptors,
        &scene.prompts,
        setup.scene_dir,
        scene.optimizer.seed,
    )
    .map_err(setup.oom("embedding the prompts", done_before))?;
    guide.set_tuning(tuning)?;
    guide.set_gradient_accumulation_steps(scene.guidance.gradient_accumulation_steps as usize)?;
    Ok((guide, models.image_model, weight_files))
}

/// Settings and schedule, written once at the start of a new run, after
/// the earlier run's files in the folder (allow_overwrite, or a grid cell's
/// broken attempt) are gone; everything that can fail at the start (models,
/// weights, prompts) has been checked by then.
fn write_run_start(setup: &RunSetup) -> Result<()> {
    let run = &setup.run;
    run.remove_run_files(STATE_FILE, is_run_file)?;
    crate::atomic::write_atomic(
        &run.path.join(SETTINGS_FILE),
        setup.scene.to_toml()?.as_bytes(),
    )?;
    let plan: Vec<_> = (1..=setup.timeline.frames())
        .map(|k| setup.timeline.frame_plan(k))
        .collect();
    write_json_atomic(&run.path.join(SCHEDULE_FILE), &plan)
}

/// Restores the end of the resumed run's last completed frame into `state`
/// and `adam`.
fn restore(
    setup: &RunSetup,
    prev: &RunState,
    state: &mut ImageState,
    adam: &mut Adam,
) -> Result<()> {
    let run = &setup.run;
    let tensors_path = run.path.join(state_tensors_file(prev.frames_done));
    let tensors = Tensor::read_safetensors(&tensors_path).map_err(|e| {
        Error::input(format!(
            "{}: cannot read the saved state ({e}); the run cannot be resumed",
            tensors_path.display()
        ))
    })?;
    let get = |name: &str| -> Result<Tensor> {
        let (_, t) = tensors.iter().find(|(n, _)| n == name).ok_or_else(|| {
            Error::input(format!(
                "{}: the saved state lacks `{name}`; the run cannot be resumed",
                run.path.display()
            ))
        })?;
        Ok(t.f_to_device(setup.device)?)
    };
    state.set_param(&get("param")?)?;
    adam.restore(
        &get("adam.exp_avg")?,
        &get("adam.exp_avg_sq")?,
        prev.adam_step,
    )
}

/// Renders `scene` into `run` (a new folder, or an interrupted one when `resuming`).
///
/// This is the entry point the grid command uses for each cell.
pub fn render_in(
    scene: &Scene,
    scene_file: &Path,
    scene_dir: &Path,
    run: RunDir,
    resuming: bool,
    opts: &RenderOptions,
) -> Result<RenderSummary> {
    let setup = RunSetup::new(scene, scene_file, scene_dir, run, resuming, opts)?;
    let (guide, image_model, weight_files) = load_guide(&setup, opts)?;
    let device = setup.device;
    // The init image before anything in the folder changes.
    let init_rgb = match &scene.stabilization.init_image {
        Some(p) => Some(load_image(p, scene.image.width, scene.image.height)?.f_to_device(device)?),
        None => None,
    };
    if !resuming {
        write_run_start(&setup)?;
    }

    // The starting image, the init target and frame 0's random state.
    let mut rng = Rng::new(scene.optimizer.seed)?;
    rng.seed_device(device);
    let done_before = setup.done_before();
    let mut state = ImageState::start(
        image_model,
        scene.image.width as i64,
        scene.image.height as i64,
        device,
        &mut rng,
        init_rgb.as_ref(),
    )
    .map_err(setup.oom("making the starting image", done_before))?;
    let init_target: Option<Target> = match &init_rgb {
        Some(rgb) => Some(
            guide
                .target_of_image(&state, rgb)
                .map_err(setup.oom("making the starting image", done_before))?,
        ),
        None => None,
    };
    let mut guide = guide;
    guide
        .set_direct_images(&state, load_direct_images(scene, device)?)
        .map_err(setup.oom("loading direct_image_prompts", done_before))?;
    let lr = if scene.optimizer.learning_rate > 0.0 {
        scene.optimizer.learning_rate
    } else {
        state.default_lr()
    };
    let mut adam = Adam::new(state.param(), lr)?;
    let mut records: Vec<FrameRecord> = Vec::new();
    if let Some(prev) = &setup.previous {
        restore(&setup, prev, &mut state, &mut adam)?;
        records = prev.frames.clone();
    }
    let first_frame = done_before + 1;
    let total_frames = setup.timeline.frames();
    let reporter = Reporter::new(
        opts.progress,
        total_frames,
        first_frame - 1,
        setup.timeline.steps_per_frame(),
    );
    // The MP4 is rebuilt from the frames already on disk when resuming.
    let mut video = Video::open(
        &setup.run,
        scene,
        scene.image.width * scene.image.pixel_size,
        scene.image.height * scene.image.pixel_size,
    )?;
    for k in 1..first_frame {
        let img = crate::output::frames::read_rgb(&setup.run.frame_path(k as usize))?;
        video.push(&img)?;
    }
    let first_image = resumed_first_frame(&setup)?;
    let mut frames = FrameLoop {
        setup: &setup,
        opts,
        guide,
        state,
        adam,
        rng,
        init_target,
        stab_target: None,
        first_frame: first_image,
        loop_target: None,
        records,
        reporter,
        video,
        frames_written: first_frame - 1,
    };
    frames.pre_animation()?;
    for k in first_frame..=total_frames {
        frames.frame(k)?;
    }
    frames.finish(weight_files)
}

/// A looping run resumed after frame 1 takes the first frame from its PNG
/// ([`loop_close`]); `None` for a new run or one that does not loop.
fn resumed_first_frame(setup: &RunSetup) -> Result<Option<Tensor>> {
    let scene = setup.scene;
    if scene.timing.loop_frames == 0 || setup.done_before() == 0 {
        return Ok(None);
    }
    let first = loop_close::read_first_frame(&setup.run, scene.image.pixel_size, setup.device)?;
    Ok(Some(first))
}

/// The per-frame loop's state: the guide, the image and its optimiser,
/// the random state, the targets, the records and the outputs.
struct FrameLoop<'s, 'a> {
    setup: &'s RunSetup<'a>,
    opts: &'s RenderOptions,
    guide: Guide,
    state: ImageState,
    adam: Adam,
    rng: Rng,
    init_target: Option<Target>,
    stab_target: Option<Target>,
    /// The first frame as written, when the scene loops (`loop_frames`).
    first_frame: Option<Tensor>,
    /// The current frame's loop-closing target and weight, in the last
    /// `loop_frames` frames.
    loop_target: Option<(f64, Target)>,
    records: Vec<FrameRecord>,
    reporter: Reporter,
    video: Video,
    frames_written: u64,
}

impl FrameLoop<'_, '_> {
    /// Pre-animation steps on the first scene, not part of the video (a new
    /// run only).
    fn pre_animation(&mut self) -> Result<()> {
        let (setup, scene) = (self.setup, self.setup.scene);
        if setup.previous.is_some() || scene.timing.pre_animation_steps == 0 {
            return Ok(());
        }
        let weights = step_weights_at(
            scene,
            &setup.timeline,
            0,
            true,
            self.init_target.as_ref(),
            None,
        )?;
        for _ in 0..scene.timing.pre_animation_steps {
            let _ = self
                .guide
                .step(&mut self.state, &mut self.adam, &weights, &mut self.rng)
                .map_err(setup.oom("a pre-animation step", 0))?;
            if self.opts.interrupt.load(Ordering::SeqCst) {
                self.reporter.finish();
                // No frame yet: this removes the empty video.
                let _ = self.video.finish();
                return Err(interrupted(&setup.run, setup.scene_file, 0));
            }
        }
        Ok(())
    }

    /// Frame `k`: the warp from frame `k − 1`, the frame's steps, then the
    /// frame and the state that reproduces it.
    fn frame(&mut self, k: u64) -> Result<()> {
        let setup = self.setup;
        let frame_start = Instant::now();
        self.rng = Rng::new(frame_seed(setup.scene.optimizer.seed, k))?;
        self.rng.seed_device(setup.device);
        self.reporter.start_frame(k);
        if k > 1 {
            self.warp_into(k)?;
        }
        self.loop_target = self.loop_target_for(k)?;
        let last_loss = self.steps(k)?;
        // The frame is done: write it, then the state that reproduces it.
        let img = self
            .state
            .image()
            .map_err(setup.oom(format!("decoding frame {k}"), k - 1))?;
        let img = tensor_to_rgb(&img, setup.scene.image.pixel_size)?;
        write_frame(&setup.run.path, k as usize, &img)?;
        if k == 1 && setup.scene.timing.loop_frames > 0 {
            let (ps, device) = (setup.scene.image.pixel_size, setup.device);
            self.first_frame = Some(loop_close::first_frame_tensor(&img, ps, device)?);
        }
        self.video.push(&img)?;
        if setup.scene.image.palette.show_palette {
            self.write_palette(k)?;
        }
        let loss = last_loss.f_double_value(&[])?;
        let secs = frame_start.elapsed().as_secs_f64();
        self.records.push(FrameRecord {
            frame: k,
            loss,
            seconds: secs,
        });
        self.frames_written = k;
        let rs = setup.run_state(k, self.adam.step, &self.records, false);
        save_state(&setup.run, &self.state, &self.adam, &rs)?;
        let steps = setup.timeline.frame_steps(k);
        let total = setup.timeline.frames();
        self.reporter
            .frame_done(k, total, loss, secs, steps.end - steps.start);
        Ok(())
    }

    /// Warps frame `k − 1` by its motion when animating (docs/design.md:
    /// motion and stabilisation) and resets Adam when the scene asks.
    fn warp_into(&mut self, k: u64) -> Result<()> {
        let (setup, scene) = (self.setup, self.setup.scene);
        let warp_oom = || setup.oom(format!("warping frame {} into frame {k}", k - 1), k - 1);
        if scene.is_animated() {
            let motion = setup.timeline.motion(k - 1);
            let (sampling, infill) = (scene.motion.sampling_mode, scene.motion.infill_mode);
            let wants_target = (scene.stabilization.direct_stabilization_weight.is_some()
                || scene.stabilization.semantic_stabilization_weight.is_some())
                && scene.stabilization.stabilization_target == StabilizationTarget::Previous;
            // pytti's 2D mode warps the Limited Palette's own tensors and
            // never re-encodes it (encoding is 201 optimiser steps).
            let limited = scene.image.image_model == scene::ImageModel::LimitedPalette;
            if scene.optimizer.reencode_each_frame && !limited {
                let img = self.state.image().map_err(warp_oom())?;
                let warped = warp::warp(&img, &motion, sampling, infill).map_err(warp_oom())?;
                self.state.set_image(&warped).map_err(warp_oom())?;
                if wants_target {
                    // pytti's target: the warped frame itself, and its encoding.
                    let target = self.guide.target_of_image(&self.state, &warped);
                    self.stab_target = Some(target.map_err(warp_oom())?);
                }
            } else {
                self.state
                    .warp_latent(&motion, sampling, infill)
                    .map_err(warp_oom())?;
                if wants_target {
                    self.stab_target = Some(self.guide.target(&self.state).map_err(warp_oom())?);
                }
            }
        }
        if scene.optimizer.reset_lr_each_frame {
            self.adam.reset()?;
        }
        Ok(())
    }

    /// Frame `k`'s loop-closing target and weight (`loop_frames`,
    /// [`loop_close`]): the first frame carried back through the motion
    /// still to come; `None` outside the last `loop_frames` frames.
    fn loop_target_for(&self, k: u64) -> Result<Option<(f64, Target)>> {
        let (setup, scene) = (self.setup, self.setup.scene);
        let weight = setup.timeline.loop_weight(k);
        let Some(first) = self.first_frame.as_ref().filter(|_| weight > 0.0) else {
            return Ok(None);
        };
        let oom = || setup.oom(format!("making frame {k}'s loop target"), k - 1);
        let motions = setup.timeline.motions_after(k);
        let (sampling, infill) = (scene.motion.sampling_mode, scene.motion.infill_mode);
        let rgb = loop_close::loop_target_image(first, &motions, sampling, infill).map_err(oom())?;
        let target = self
            .guide
            .target_of_image(&self.state, &rgb)
            .map_err(oom())?;
        Ok(Some((weight, target)))
    }

    /// The optimisation steps of frame `k` (with their snapshots); the last
    /// step's loss, on the device.
    fn steps(&mut self, k: u64) -> Result<Tensor> {
        let (setup, scene) = (self.setup, self.setup.scene);
        let steps = setup.timeline.frame_steps(k);
        let mut last_loss = Tensor::f_zeros([], (Kind::Float, setup.device))?;
        for step in steps.clone() {
            let before_first_warp = k == 1;
            let stab = self.stab_target.as_ref().or(self.init_target.as_ref());
            let mut weights = step_weights_at(
                scene,
                &setup.timeline,
                step,
                before_first_warp || !scene.is_animated(),
                self.init_target.as_ref(),
                stab,
            )?;
            weights.loop_closing =
                (self.loop_target.as_ref()).map(|(w, target)| (WeightStop::weight(*w), target));
            last_loss = self
                .guide
                .step(&mut self.state, &mut self.adam, &weights, &mut self.rng)
                .map_err(setup.oom(format!("step {} (frame {k})", step + 1), k - 1))?;
            let show = self.reporter.shows_bars() && (step + 1) % 10 == 0;
            self.reporter.step(if show {
                Some(last_loss.f_double_value(&[])?)
            } else {
                None
            });
            if setup.timeline.is_save_step(step) && (step + 1) != steps.end {
                self.snapshot(step, k)?;
            }
            if self.opts.interrupt.load(Ordering::SeqCst) {
                self.reporter.finish();
                let video_path = self.video.finish().ok().flatten();
                let mut e = interrupted(&setup.run, setup.scene_file, self.frames_written);
                if let Some(v) = video_path {
                    e.message = format!("{}\nthe video so far: {}", e.message, v.display());
                }
                return Err(e);
            }
        }
        Ok(last_loss)
    }

    /// The image after `step` (inside frame `k`) as `snapshots/step_NNNNNNN.png`.
    fn snapshot(&self, step: u64, k: u64) -> Result<()> {
        let setup = self.setup;
        let snap_dir = setup.run.path.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snap_dir)
            .map_err(|e| Error::io(format!("creating {}", snap_dir.display()), e))?;
        let img = self.state.image().map_err(setup.oom(
            format!("decoding the snapshot after step {}", step + 1),
            k - 1,
        ))?;
        let img = tensor_to_rgb(&img, setup.scene.image.pixel_size)?;
        write_png_atomic(&snap_dir.join(format!("step_{:07}.png", step + 1)), &img)
    }

    /// `show_palette`: the Limited Palette's palettes after frame `k` as
    /// `palettes/palette_NNNNN.png` (pytti's `render_pallet`, which its
    /// notebook displays; nothing for the other image models).
    fn write_palette(&self, k: u64) -> Result<()> {
        let Some(img) = self.state.palette_image()? else {
            return Ok(());
        };
        let dir = self.setup.run.path.join(PALETTE_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let img = tensor_to_rgb(&img, 1)?;
        write_png_atomic(&dir.join(format!("palette_{k:05}.png")), &img)
    }

    /// After the last frame: the MP4, the final state and `metadata.json`.
    fn finish(mut self, weights: Vec<WeightFile>) -> Result<RenderSummary> {
        let setup = self.setup;
        self.reporter.finish();
        let video_path = self.video.finish()?;
        let total_frames = setup.timeline.frames();
        let final_state = setup.run_state(total_frames, self.adam.step, &self.records, true);
        write_json_atomic(&setup.run.path.join(STATE_FILE), &final_state)?;
        let gpu_memory = crate::gpu::memory_stats(setup.device);
        let metadata = RunMetadata {
            device: format!("{:?}", setup.device),
            frames: self.records,
            gpu_peak_allocated_mib: gpu_memory.map(|m| m.peak_allocated_mib()),
            gpu_peak_reserved_mib: gpu_memory.map(|m| m.peak_reserved_mib()),
            precision: format!("{:?}", setup.kind),
            resumed: setup.resuming,
            scene_file: setup.scene_file.display().to_string(),
            seed: setup.scene.optimizer.seed,
            speed_switches: setup.tuning.describe(),
            total_seconds_this_session: setup.started.elapsed().as_secs_f64(),
            video: video_path.as_ref().map(|p| p.display().to_string()),
            weights,
            zoetrope_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        write_json_atomic(&setup.run.path.join(METADATA_FILE), &metadata)?;
        Ok(RenderSummary {
            run_dir: setup.run.path.clone(),
            frames_written: self.frames_written,
            total_frames,
            video: video_path,
        })
    }
}

fn interrupted(run: &RunDir, scene_file: &Path, frames_done: u64) -> Error {
    let message = if frames_done == 0 {
        format!(
            "interrupted before the first frame was written; start again with:\n  zoetrope render {}",
            scene_file.display()
        )
    } else {
        format!(
            "interrupted after frame {frames_done}; continue with:\n  zoetrope render --resume {}",
            run.path.display()
        )
    };
    Error::new(ErrorKind::Interrupted, message)
}

fn save_state(run: &RunDir, state: &ImageState, adam: &Adam, rs: &RunState) -> Result<()> {
    // This frame's tensors first (atomically, under their own name), then the
    // JSON that points at them, then the previous frame's tensors go. A crash
    // anywhere in between leaves a JSON whose tensors are on disk.
    let file = run.path.join(state_tensors_file(rs.frames_done));
    let param = state.param().f_detach()?;
    let [(n1, m1), (n2, m2)] = adam.tensors();
    let bytes = crate::ops::safetensors_bytes(&[("param", &param), (n1, m1), (n2, m2)])?;
    crate::atomic::write_atomic(&file, &bytes).map_err(|e| plain_write_error(e, &file))?;
    write_json_atomic(&run.path.join(STATE_FILE), rs)?;
    if rs.frames_done > 1 {
        let _ = std::fs::remove_file(run.path.join(state_tensors_file(rs.frames_done - 1)));
    }
    Ok(())
}

/// A failed state write in plain words: a full disk says what to do, from
/// the OS error kept as the cause; other errors pass unchanged.
fn plain_write_error(e: Error, file: &Path) -> Error {
    match e.io_cause().map(std::io::Error::kind) {
        Some(std::io::ErrorKind::StorageFull) => Error {
            message: format!(
                "writing {}: no space left on the device (free some space, then resume or \
                 render again)",
                file.display()
            ),
            ..e
        },
        _ => e,
    }
}

/// `direct_image_prompts`' images at the render's size and their grey masks
/// (docs/design.md §6a), on `device`.
fn load_direct_images(
    scene: &Scene,
    device: tch::Device,
) -> Result<Vec<(String, Tensor, Option<Tensor>)>> {
    let (w, h) = (scene.image.width, scene.image.height);
    scene
        .stabilization
        .direct_image_prompts
        .iter()
        .map(|d| {
            let what = format!("direct_image_prompts \"{}\"", d.raw);
            let rgb = load_image(&d.path, w, h)
                .map_err(|e| e.context(what.clone()))?
                .f_to_device(device)?;
            let mask = match &d.mask {
                Some((path, inverted)) => Some(
                    crate::guidance::mask::ImageMask::load(path, *inverted, &what)?.to_tensor()?,
                ),
                None => None,
            };
            Ok((d.raw.clone(), rgb, mask))
        })
        .collect()
}

/// Weights of every loss at `step`.
fn step_weights_at<'a>(
    scene: &Scene,
    timeline: &Timeline,
    step: u64,
    init_active: bool,
    init_target: Option<&'a Target>,
    stab_target: Option<&'a Target>,
) -> Result<StepWeights<'a>> {
    let t = timeline.t_at(step);
    let f = timeline.f_at(step);
    let scene_weights = timeline.scene_weights(step);
    let prompt_weights = scene
        .prompts
        .iter()
        .map(|prompts| {
            prompts
                .iter()
                .map(|p| WeightStop::of_prompt(p, t, f))
                .collect()
        })
        .collect();
    let pair = |spec: &Option<WeightSpec>, target: Option<&'a Target>, active: bool| match (
        spec, target,
    ) {
        (Some(spec), Some(target)) if active => Some((
            WeightStop::at(&spec.weight, spec.stop.as_ref(), t, f),
            target,
        )),
        _ => None,
    };
    Ok(StepWeights {
        scene_weights,
        prompt_weights,
        direct_init: pair(
            &scene.stabilization.direct_init_weight,
            init_target,
            init_active,
        ),
        direct_stabilization: pair(
            &scene.stabilization.direct_stabilization_weight,
            stab_target,
            true,
        ),
        semantic_init: pair(
            &scene.stabilization.semantic_init_weight,
            init_target,
            init_active,
        ),
        semantic_stabilization: pair(
            &scene.stabilization.semantic_stabilization_weight,
            stab_target,
            true,
        ),
        loop_closing: None,
        smoothing: scene
            .stabilization
            .smoothing_weight
            .as_ref()
            .map(|s| WeightStop::at(&s.weight, s.stop.as_ref(), t, f)),
        direct_images: scene
            .stabilization
            .direct_image_prompts
            .iter()
            .map(|d| WeightStop::at(&d.weight, d.stop.as_ref(), t, f))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_reads_plainly_and_keeps_its_cause() {
        let file = Path::new("/run/state_00003.safetensors");
        let full = Error::io("could not write x", std::io::Error::from_raw_os_error(28));
        let e = plain_write_error(full, file);
        assert_eq!(
            e.message,
            "writing /run/state_00003.safetensors: no space left on the device (free some \
             space, then resume or render again)"
        );
        assert_eq!(e.exit_code(), 4);
        assert_eq!(e.io_cause().and_then(|c| c.raw_os_error()), Some(28));
        let denied = Error::io("could not write x", std::io::Error::from_raw_os_error(13));
        let e = plain_write_error(denied, file);
        assert_eq!(
            e.message,
            "could not write x: Permission denied (os error 13)"
        );
    }

    #[test]
    fn frame_seeds_differ_and_repeat() {
        assert_eq!(frame_seed(12345, 3), frame_seed(12345, 3));
        assert_ne!(frame_seed(12345, 3), frame_seed(12345, 4));
        assert_ne!(frame_seed(12345, 3), frame_seed(12346, 3));
        assert!(frame_seed(u64::MAX, u64::MAX) < 1 << 63);
    }
}
