//! What pytti-core's settings are and what zoetrope does with each: its
//! defaults, the keys of modes zoetrope does not render, the notebook
//! display and model-cache keys, and the settings other parts of zoetrope
//! are adding (docs/scene-format.md, "pytti presets").

/// The pytti-core release whose `default.yaml` the defaults below are
/// (pytti-tools/pytti-core at commit b5070aa, 2024-02-10, the current
/// `src/pytti/assets/default.yaml`).
pub const PYTTI_VERSION: &str = "pytti-core b5070aa (2024-02-10)";

/// pytti-core's defaults, in the order of its `default.yaml`: every key a
/// preset may leave out. `scenes` is Hydra's `???` (required); `seed` is
/// `${now:%f}` (a new seed each run); `models_parent_dir` is
/// `${user_cache:}`.
pub const DEFAULTS: &str = r#"
scenes: ???
scene_prefix: ''
scene_suffix: ''
direct_image_prompts: ''
init_image: ''
direct_init_weight: ''
semantic_init_weight: ''
image_model: Unlimited Palette
vqgan_model: sflckr
animation_mode: off
width: 512
height: 512
steps_per_scene: 100
steps_per_frame: 50
interpolation_steps: 0
learning_rate: null
reset_lr_each_frame: true
seed: ${now:%f}
cutouts: 40
cut_pow: 2
cutout_border: 0.25
border_mode: clamp
field_of_view: 60
near_plane: 1
far_plane: 10000
input_audio: ''
input_audio_offset: 0
input_audio_filters: []
pre_animation_steps: 50
lock_camera: true
translate_x: '0'
translate_y: '0'
translate_z_3d: '0'
rotate_3d: '[1, 0, 0, 0]'
rotate_2d: '0'
zoom_x_2d: '0'
zoom_y_2d: '0'
sampling_mode: bicubic
infill_mode: wrap
pixel_size: 1
smoothing_weight: 0.02
random_initial_palette: false
palette_size: 5
palettes: 20
gamma: 1
hdr_weight: 0.01
palette_normalization_weight: 0.2
show_palette: false
target_palette: ''
lock_palette: false
frames_per_second: 12
direct_stabilization_weight: ''
semantic_stabilization_weight: ''
depth_stabilization_weight: ''
edge_stabilization_weight: ''
flow_stabilization_weight: ''
video_path: ''
frame_stride: 1
reencode_each_frame: true
flow_long_term_samples: 1
ViTB32: true
ViTB16: false
ViTL14: false
ViTL14_336px: false
RN50: false
RN101: false
RN50x4: false
RN50x16: false
RN50x64: false
use_mmc: false
mmc_models: []
file_namespace: default
allow_overwrite: false
display_every: 50
clear_every: 0
display_scale: 1
save_every: 50
backups: 3
show_graphs: false
approximate_vram_usage: false
use_tensorboard: false
models_parent_dir: ${user_cache:}
gradient_accumulation_steps: 1
device: 0
"#;

/// Settings of pytti's 3D mode: a preset may carry them at their defaults.
pub const THREE_D: &[&str] = &[
    "field_of_view",
    "near_plane",
    "far_plane",
    "lock_camera",
    "translate_z_3d",
    "rotate_3d",
    "depth_stabilization_weight",
    "flow_stabilization_weight",
];

/// Settings of pytti's Video Source mode, likewise.
pub const VIDEO_SOURCE: &[&str] = &["video_path", "frame_stride", "flow_long_term_samples"];

/// pytti losses zoetrope does not compute: refused unless at the default.
pub const NOT_COMPUTED: &[&str] = &["edge_stabilization_weight"];

/// pytti's notebook display, logging and model-cache keys: accepted, with
/// one note saying what zoetrope does instead.
pub const DISPLAY_AND_CACHE: &[&str] = &[
    "display_every",
    "clear_every",
    "display_scale",
    "show_graphs",
    "use_tensorboard",
    "approximate_vram_usage",
    "models_parent_dir",
    "backups",
];

/// The note for [`DISPLAY_AND_CACHE`] keys (and `device` as a GPU index).
pub const DISPLAY_NOTE: &str = "zoetrope has no notebook display: it writes every frame and \
    a snapshot every save_every steps to the run folder, prints progress, and `plan` shows the \
    schedule and memory; model weights live in weights/ (`zoetrope weights list`), runs resume \
    with `render --resume` instead of backups, and the device is the `device` setting \
    (\"auto\" picks CUDA when present)";

/// Settings whose empty string means "none" in pytti.
pub const EMPTY_IS_NONE: &[&str] = &[
    "init_image",
    "direct_init_weight",
    "semantic_init_weight",
    "direct_stabilization_weight",
    "semantic_stabilization_weight",
    "smoothing_weight",
];

/// pytti's CLIP flags in pytti's order (`clip.available_models()`), with
/// the model each selects.
pub const CLIP_FLAGS: [(&str, &str); 9] = [
    ("RN50", "RN50"),
    ("RN101", "RN101"),
    ("RN50x4", "RN50x4"),
    ("RN50x16", "RN50x16"),
    ("RN50x64", "RN50x64"),
    ("ViTB32", "ViT-B/32"),
    ("ViTB16", "ViT-B/16"),
    ("ViTL14", "ViT-L/14"),
    ("ViTL14_336px", "ViT-L/14@336px"),
];
