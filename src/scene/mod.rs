//! The scene file: settings (pytti's names), prompt grammar and expressions.
//!
//! A scene file is TOML with top-level keys only (SPEC §1). [`Scene::load`]
//! reads it into a fully resolved [`Scene`]: every setting present, defaults
//! filled in, expressions and prompts parsed, sizes rounded to the VQGAN
//! factor, the learning rate and seed chosen. Any mistake is an
//! [`Error::input`] naming the file, line and column, the setting, what was
//! expected and what to do — loading never panics on user input.
//!
//! [`Scene::check_files`] additionally opens the files the scene names
//! (init image, image prompts); `plan` and `render` call it, tests and
//! fuzzers of the grammar need not.
//!
//! A [`Scene`] serializes (serde) with the same setting names, so the
//! resolved settings a render records load back with [`Scene::from_str`].
//!
//! Decisions where SPEC is silent:
//! - pytti perceptor flags (`ViTB32 = true`, `RN50 = false`) edit the
//!   `perceptors` list (default or given): `true` adds, `false` removes.
//! - `use_mmc` (a pytti switch for its model loader) is accepted and ignored
//!   with a warning, so pytti configs port unchanged.
//! - Integer settings also accept whole-valued floats (`steps_per_frame =
//!   50.0`).
//! - Relative paths (`init_image`, `[image]` prompts) are relative to the
//!   scene file's folder and are stored resolved to absolute paths.
//! - `direct_init_weight`, `semantic_init_weight` and
//!   `stabilization_target = "init"` need an `init_image`: an error otherwise.

pub mod expr;
mod lookup;
mod modes;
pub mod prompt;

pub use expr::Param;
pub use modes::{InfillMode, SamplingMode};
pub use prompt::{Prompt, PromptSource, WeightSpec};

use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// How consecutive scenes cross-fade (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// The fade is centred on the scene boundary (the seed document's reading).
    Centered,
    /// pytti-core: the fade starts at the beginning of each later scene.
    Pytti,
}

/// What is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageModel {
    /// The VQGAN latent grid `z`.
    #[serde(rename = "VQGAN")]
    Vqgan,
    /// RGB pixels directly.
    #[serde(rename = "Unlimited Palette")]
    UnlimitedPalette,
}

/// The taming-transformers VQGAN checkpoints pytti knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VqganModel {
    Imagenet,
    #[serde(rename = "imagenet_1024")]
    Imagenet1024,
    Coco,
    Wikiart,
    Sflckr,
    Openimages,
}

impl VqganModel {
    /// All models with their setting names.
    pub const ALL: [(&'static str, VqganModel); 6] = [
        ("imagenet", VqganModel::Imagenet),
        ("imagenet_1024", VqganModel::Imagenet1024),
        ("coco", VqganModel::Coco),
        ("wikiart", VqganModel::Wikiart),
        ("sflckr", VqganModel::Sflckr),
        ("openimages", VqganModel::Openimages),
    ];

    /// The setting name (`"imagenet"`, ...), also the weights file stem.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("imagenet")
    }

    /// `openimages` is the gumbel f8 model.
    pub fn is_gumbel(self) -> bool {
        self == VqganModel::Openimages
    }

    /// Downsampling factor: image sizes must be multiples of it.
    pub fn factor(self) -> u32 {
        if self.is_gumbel() {
            8
        } else {
            16
        }
    }
}

/// The `vqgan_model` setting: one of pytti's six names, or another model —
/// a name from the weights manifest (such as the untrained `tiny-vqgan`) or a
/// path to a `.safetensors` file, whose factor is read from its shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VqganChoice {
    Named(VqganModel),
    Other {
        /// The manifest name, or the file's absolute path.
        name: String,
        factor: u32,
        gumbel: bool,
    },
}

impl VqganChoice {
    /// The name or path the weights are resolved from.
    pub fn name(&self) -> &str {
        match self {
            VqganChoice::Named(m) => m.name(),
            VqganChoice::Other { name, .. } => name,
        }
    }
    /// Gumbel quantiser (default learning rate 0.15).
    pub fn is_gumbel(&self) -> bool {
        match self {
            VqganChoice::Named(m) => m.is_gumbel(),
            VqganChoice::Other { gumbel, .. } => *gumbel,
        }
    }
    /// Downsampling factor: image sizes must be multiples of it.
    pub fn factor(&self) -> u32 {
        match self {
            VqganChoice::Named(m) => m.factor(),
            VqganChoice::Other { factor, .. } => *factor,
        }
    }
}

impl Serialize for VqganChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `"off"` or `"2D"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnimationMode {
    #[serde(rename = "off")]
    Off,
    #[serde(rename = "2D")]
    TwoD,
}

/// What `direct_stabilization_weight` pulls toward after the first warp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StabilizationTarget {
    Previous,
    Init,
}

/// Numeric precision of the render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Auto,
    Fp32,
    Bf16,
}

/// CLIP perceptor names as SPEC §1 lists them.
pub const PERCEPTORS: [&str; 9] = [
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B/32",
    "ViT-B/16",
    "ViT-L/14",
    "ViT-L/14@336px",
];

/// The [`PERCEPTORS`] name `name` spells, ignoring case, `-`, `/`, `_` and `@`
/// (`vitb32`, `ViT-B-32` and `ViT-B/32` are one model).
pub fn canonical_perceptor(name: &str) -> Option<&'static str> {
    let norm = |x: &str| {
        x.to_lowercase()
            .chars()
            .filter(|c| !matches!(c, '-' | '/' | '_' | '@'))
            .collect::<String>()
    };
    let n = norm(name);
    PERCEPTORS.iter().find(|p| norm(p) == n).copied()
}

/// pytti's boolean flag names for the perceptors.
pub const PYTTI_PERCEPTOR_FLAGS: [(&str, &str); 9] = [
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

/// Every setting name a scene file may use (pytti flags and `use_mmc`
/// included), for validation and "did you mean" hints.
pub const SETTINGS: [&str; 45] = [
    "scenes",
    "scene_prefix",
    "scene_suffix",
    "steps_per_scene",
    "steps_per_frame",
    "interpolation_steps",
    "transition",
    "save_every",
    "pre_animation_steps",
    "frames_per_second",
    "width",
    "height",
    "pixel_size",
    "image_model",
    "vqgan_model",
    "perceptors",
    "cutouts",
    "cut_pow",
    "cutout_border",
    "learning_rate",
    "reset_lr_each_frame",
    "reencode_each_frame",
    "seed",
    "animation_mode",
    "translate_x",
    "translate_y",
    "rotate_2d",
    "zoom_x_2d",
    "zoom_y_2d",
    "infill_mode",
    "sampling_mode",
    "init_image",
    "direct_init_weight",
    "direct_stabilization_weight",
    "stabilization_target",
    "semantic_init_weight",
    "semantic_stabilization_weight",
    "file_namespace",
    "allow_overwrite",
    "device",
    "precision",
    "use_mmc",
    // pytti flags that are not also perceptor names above
    "ViTB32",
    "ViTB16",
    "ViTL14",
];

/// A fully resolved scene: every SPEC §1 setting with its value.
///
/// Fields are public so the renderer reads them directly; they are filled
/// only by [`Scene::load`] / [`Scene::from_str`], which validate them.
#[derive(Debug, Clone, Serialize)]
pub struct Scene {
    pub scenes: String,
    pub scene_prefix: String,
    pub scene_suffix: String,
    pub steps_per_scene: u64,
    pub steps_per_frame: u64,
    pub interpolation_steps: u64,
    pub transition: Transition,
    pub save_every: u64,
    pub pre_animation_steps: u64,
    pub frames_per_second: f64,
    /// After rounding down to the VQGAN factor.
    pub width: u32,
    pub height: u32,
    pub pixel_size: u32,
    pub image_model: ImageModel,
    pub vqgan_model: VqganChoice,
    /// Canonical names from [`PERCEPTORS`], other model names from the weights
    /// manifest, or absolute paths of `.safetensors` files; without duplicates.
    pub perceptors: Vec<String>,
    pub cutouts: u32,
    pub cut_pow: f64,
    pub cutout_border: f64,
    /// Resolved: the given value or the image model's default.
    pub learning_rate: f64,
    pub reset_lr_each_frame: bool,
    pub reencode_each_frame: bool,
    /// Resolved: the given seed or a random one (see [`Scene::seed_was_random`]).
    pub seed: u64,
    pub animation_mode: AnimationMode,
    pub translate_x: Param,
    pub translate_y: Param,
    pub rotate_2d: Param,
    pub zoom_x_2d: Param,
    pub zoom_y_2d: Param,
    pub infill_mode: InfillMode,
    pub sampling_mode: SamplingMode,
    /// Resolved against the scene file's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_image: Option<PathBuf>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weight_opt"
    )]
    pub direct_init_weight: Option<WeightSpec>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weight_opt"
    )]
    pub direct_stabilization_weight: Option<WeightSpec>,
    pub stabilization_target: StabilizationTarget,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weight_opt"
    )]
    pub semantic_init_weight: Option<WeightSpec>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weight_opt"
    )]
    pub semantic_stabilization_weight: Option<WeightSpec>,
    pub file_namespace: String,
    pub allow_overwrite: bool,
    pub device: String,
    pub precision: Precision,

    /// The parsed prompts: one list per scene (image paths resolved).
    #[serde(skip)]
    pub prompts: Vec<Vec<Prompt>>,
    /// Things the user should know (rounded sizes, ignored pytti keys).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// True when no `seed` was given and one was drawn.
    #[serde(skip)]
    pub seed_was_random: bool,
    /// The file (or name) the scene came from, for messages.
    #[serde(skip)]
    pub origin: String,
}

/// Weight strings serialize as written (`"0.3"`, `"1:-.5"`).
fn ser_weight_opt<S: serde::Serializer>(
    w: &Option<WeightSpec>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match w {
        Some(w) => s.serialize_str(&w.to_string()),
        None => s.serialize_none(),
    }
}

impl Scene {
    /// Reads and resolves a scene file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scene> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::input(format!(
                "cannot read the scene file {}: {e}; check the path",
                path.display()
            ))
        })?;
        Scene::from_str(&text, &path.to_string_lossy())
    }

    /// Parses scene text. `origin_name` is the file name used in messages;
    /// its folder resolves relative paths and its stem is the default
    /// `file_namespace`.
    pub fn from_str(text: &str, origin_name: &str) -> Result<Scene> {
        let doc = Doc {
            text,
            origin: origin_name,
        };
        doc.build()
    }

    /// Serializes the resolved settings as a TOML scene file that loads
    /// back to the same scene. `init_image` is written as an absolute path;
    /// `[image]` prompts stay as written inside `scenes`, so reload with the
    /// original scene file's path as `origin_name` (or keep them absolute).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::internal(format!("writing settings: {e}")))
    }

    /// Number of scenes.
    pub fn scene_count(&self) -> usize {
        self.prompts.len()
    }

    /// Whether 2D motion is on.
    pub fn is_animated(&self) -> bool {
        self.animation_mode == AnimationMode::TwoD
    }

    /// Opens every file the scene names, as `render` would: the init image
    /// must exist and decode, every image prompt likewise.
    pub fn check_files(&self) -> Result<()> {
        if let Some(p) = &self.init_image {
            check_image(p, "init_image", &self.origin)?;
        }
        for (j, scene) in self.prompts.iter().enumerate() {
            for prompt in scene {
                if let PromptSource::Image(p) = &prompt.source {
                    check_image(
                        p,
                        &format!("scenes: scene {}, prompt \"{}\"", j + 1, prompt.raw),
                        &self.origin,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn check_image(path: &Path, what: &str, origin: &str) -> Result<()> {
    if !path.is_file() {
        return Err(Error::input(format!(
            "{origin}: {what}: the image {} does not exist; paths are relative to the scene \
             file's folder",
            path.display()
        )));
    }
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| {
            Error::input(format!(
                "{origin}: {what}: cannot open {}: {e}",
                path.display()
            ))
        })?
        .decode()
        .map_err(|e| {
            Error::input(format!(
                "{origin}: {what}: {} is not a readable image ({e}); use a PNG or JPEG",
                path.display()
            ))
        })?;
    Ok(())
}

type Value<'i> = Spanned<DeValue<'i>>;

/// The TOML text being resolved, for positions in messages.
struct Doc<'a> {
    text: &'a str,
    origin: &'a str,
}

impl<'a> Doc<'a> {
    /// 1-based line and character column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let mut off = offset;
        while off > 0 && !self.text.is_char_boundary(off) {
            off -= 1;
        }
        let before = &self.text[..off];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn at(&self, span: Range<usize>) -> String {
        let (l, c) = self.line_col(span.start);
        format!("{}:{l}:{c}", self.origin)
    }

    fn err(&self, span: Range<usize>, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::input(format!("{}: setting `{key}`: {msg}", self.at(span)))
    }

    fn build(&self) -> Result<Scene> {
        let table = DeTable::parse(self.text).map_err(|e| {
            let at = match e.span() {
                Some(s) => self.at(s),
                None => self.origin.to_string(),
            };
            Error::input(format!(
                "{at}: not valid TOML: {}; settings are written `name = value`, strings in \
                 double quotes",
                e.message().trim()
            ))
        })?;
        let mut vals: HashMap<String, (Range<usize>, &Value)> = HashMap::new();
        for (k, v) in table.get_ref().iter() {
            let name: &str = k.get_ref();
            if let DeValue::Table(_) = v.get_ref() {
                return Err(Error::input(format!(
                    "{}: `[{name}]`: scene files use top-level settings only, no tables; \
                     write `setting = value` lines",
                    self.at(k.span())
                )));
            }
            if !SETTINGS.contains(&name) && !PYTTI_PERCEPTOR_FLAGS.iter().any(|(f, _)| *f == name) {
                return Err(Error::input(format!(
                    "{}: unknown setting `{name}`{}",
                    self.at(k.span()),
                    suggest(name, SETTINGS.iter().copied())
                )));
            }
            vals.insert(name.to_string(), (k.span(), v));
        }
        let r = Reader { doc: self, vals };
        r.resolve()
    }
}

/// `; did you mean `x`?` for the closest candidate, or nothing.
fn suggest<'s>(name: &str, candidates: impl Iterator<Item = &'s str>) -> String {
    let lower = name.to_lowercase();
    let best = candidates
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((s, c)) if s > 0.7 => format!("; did you mean `{c}`?"),
        _ => "; see docs/scene-format.md for the list of settings".to_string(),
    }
}

struct Reader<'a, 'i> {
    doc: &'a Doc<'a>,
    vals: HashMap<String, (Range<usize>, &'a Value<'i>)>,
}

impl Reader<'_, '_> {
    fn get(&self, key: &str) -> Option<(Range<usize>, &DeValue<'_>)> {
        self.vals.get(key).map(|(_, v)| (v.span(), v.get_ref()))
    }

    /// The value's span, or the file start for a setting left at its default.
    fn span_of(&self, key: &str) -> Range<usize> {
        self.vals.get(key).map(|(_, v)| v.span()).unwrap_or(0..0)
    }

    fn type_err(&self, key: &str, span: Range<usize>, v: &DeValue, expected: &str) -> Error {
        self.doc.err(
            span,
            key,
            format!("expected {expected}, found {}", v.type_str()),
        )
    }

    fn number(&self, key: &str, span: &Range<usize>, v: &DeValue) -> Result<f64> {
        let parsed = match v {
            DeValue::Integer(i) => {
                let s = i.as_str().replace('_', "");
                i64::from_str_radix(&s, i.radix()).ok().map(|x| x as f64)
            }
            DeValue::Float(f) => {
                let s = f.as_str().replace('_', "");
                s.parse::<f64>().ok()
            }
            _ => return Err(self.type_err(key, span.clone(), v, "a number")),
        };
        parsed.ok_or_else(|| {
            self.doc
                .err(span.clone(), key, "this number is out of range")
        })
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some((span, v)) => {
                let x = self.number(key, &span, v)?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(x)
            }
        }
    }

    /// A whole number in `[min, max]`.
    fn int_or(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        let Some((span, v)) = self.get(key) else {
            return Ok(default);
        };
        let x = self.number(key, &span, v)?;
        if x.fract() != 0.0 || !x.is_finite() {
            return Err(self
                .doc
                .err(span, key, format!("expected a whole number, found {x}")));
        }
        if x < min as f64 || x > max as f64 {
            return Err(self.doc.err(
                span,
                key,
                format!("{x} is out of range: expected a whole number from {min} to {max}"),
            ));
        }
        Ok(x as u64)
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some((_, DeValue::Boolean(b))) => Ok(*b),
            Some((span, v)) => Err(self.type_err(key, span, v, "true or false")),
        }
    }

    fn string(&self, key: &str) -> Result<Option<(Range<usize>, String)>> {
        match self.get(key) {
            None => Ok(None),
            Some((span, DeValue::String(s))) => Ok(Some((span, s.to_string()))),
            Some((span, v)) => Err(self.type_err(key, span, v, "a string in double quotes")),
        }
    }

    fn string_or(&self, key: &str, default: &str) -> Result<String> {
        Ok(self
            .string(key)?
            .map(|(_, s)| s)
            .unwrap_or_else(|| default.to_string()))
    }

    /// One of `options` (case-insensitive).
    fn choice<T: Copy>(&self, key: &str, default: T, options: &[(&str, T)]) -> Result<T> {
        let Some((span, s)) = self.string(key)? else {
            return Ok(default);
        };
        let wanted = s.trim().to_lowercase();
        if let Some((_, v)) = options.iter().find(|(n, _)| n.to_lowercase() == wanted) {
            return Ok(*v);
        }
        let list: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        Err(self.doc.err(
            span,
            key,
            format!(
                "\"{s}\" is not one of {}{}",
                list.join(", "),
                suggest(&s, options.iter().map(|(n, _)| *n))
            ),
        ))
    }

    /// Column in the file of character `col` (1-based) inside a string value.
    fn inner_col(&self, span: &Range<usize>) -> usize {
        let raw = &self.doc.text[span.clone()];
        if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            1
        } else {
            0
        }
    }

    fn expr_err(&self, key: &str, span: &Range<usize>, text: &str, e: expr::ExprError) -> Error {
        let (line, col) = self.doc.line_col(span.start);
        let file_col = col + self.inner_col(span) + e.column - 1;
        Error::input(format!(
            "{}:{line}:{file_col}: setting `{key}`: `{text}` does not parse at column {}: {}\n    \
             {text}\n    {}^",
            self.doc.origin,
            e.column,
            e.message,
            " ".repeat(e.column.saturating_sub(1))
        ))
    }

    /// A number, an expression string or a keyframe string.
    fn param_or(&self, key: &str, default: f64) -> Result<Param> {
        match self.get(key) {
            None => Ok(Param::constant(default)),
            Some((span, DeValue::String(s))) => {
                Param::parse(s).map_err(|e| self.expr_err(key, &span, s, e))
            }
            Some((span, v)) => {
                let x = self.number(key, &span, v).map_err(|_| {
                    self.type_err(
                        key,
                        span.clone(),
                        v,
                        "a number, an expression string (\"sin(t)\") or keyframes (\"0:(0), 24:(1)\")",
                    )
                })?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(Param::constant(x))
            }
        }
    }

    fn weight(&self, key: &str) -> Result<Option<WeightSpec>> {
        match self.get(key) {
            None => Ok(None),
            Some((span, DeValue::String(s))) => WeightSpec::parse(s)
                .map(Some)
                .map_err(|e| self.expr_err(key, &span, s, e)),
            Some((span, v)) => {
                let x = self.number(key, &span, v).map_err(|_| {
                    self.type_err(
                        key,
                        span.clone(),
                        v,
                        "a weight: a number or \"weight:stop\"",
                    )
                })?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(Some(WeightSpec::constant(x)))
            }
        }
    }

    /// The folder relative paths are resolved against: the scene file's,
    /// made absolute so that the resolved settings a run records stay valid
    /// wherever they are read back from (`render --resume`).
    fn base_dir(&self) -> PathBuf {
        Path::new(self.doc.origin)
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    p.to_path_buf()
                } else {
                    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
                }
            })
            .unwrap_or_default()
    }

    /// `vqgan_model`: pytti's six names, a weights-manifest name, or a path.
    fn vqgan_choice(&self, base_dir: &Path, warnings: &mut Vec<String>) -> Result<VqganChoice> {
        let Some((span, s)) = self.string("vqgan_model")? else {
            return Ok(VqganChoice::Named(VqganModel::Imagenet));
        };
        let wanted = s.trim();
        if let Some((_, v)) = VqganModel::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
        {
            return Ok(VqganChoice::Named(*v));
        }
        if wanted.ends_with(".safetensors") || wanted.contains('/') {
            let p = Path::new(wanted);
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            };
            if !path.is_file() {
                return Err(self.doc.err(
                    span,
                    "vqgan_model",
                    format!(
                        "the weights file {} does not exist (paths are relative to the scene \
                         file's folder)",
                        path.display()
                    ),
                ));
            }
            let (factor, gumbel) = lookup::vqgan_file_layout(&path)
                .map_err(|e| self.doc.err(span.clone(), "vqgan_model", e.message))?;
            return Ok(VqganChoice::Other {
                name: path.display().to_string(),
                factor,
                gumbel,
            });
        }
        if let Some((name, path)) = lookup::vqgan_in_manifest(wanted) {
            return Ok(match path {
                Some(path) => {
                    let (factor, gumbel) = lookup::vqgan_file_layout(&path)
                        .map_err(|e| self.doc.err(span.clone(), "vqgan_model", e.message))?;
                    VqganChoice::Other {
                        name,
                        factor,
                        gumbel,
                    }
                }
                None => {
                    warnings.push(format!(
                        "vqgan_model \"{name}\": its weights are not present, so its factor is \
                         taken as 16 for now; render checks the real one"
                    ));
                    VqganChoice::Other {
                        name,
                        factor: 16,
                        gumbel: false,
                    }
                }
            });
        }
        let names: Vec<&str> = VqganModel::ALL.iter().map(|(n, _)| *n).collect();
        Err(self.doc.err(
            span,
            "vqgan_model",
            format!(
                "\"{s}\" is not one of {} (or a weights-manifest name, or a path to a \
                 .safetensors file){}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                suggest(&s, names.iter().copied())
            ),
        ))
    }

    fn perceptors(&self) -> Result<Vec<String>> {
        let mut list: Vec<String> = match self.get("perceptors") {
            None => vec!["ViT-B/32".to_string()],
            Some((span, v)) => {
                let items: Vec<(Range<usize>, String)> =
                    match v {
                        DeValue::String(s) => vec![(span.clone(), s.to_string())],
                        DeValue::Array(a) => {
                            let mut out = Vec::new();
                            for item in a.iter() {
                                match item.get_ref() {
                                    DeValue::String(s) => out.push((item.span(), s.to_string())),
                                    other => return Err(self.type_err(
                                        "perceptors",
                                        item.span(),
                                        other,
                                        "perceptor names as strings, e.g. [\"ViT-B/32\", \"RN50\"]",
                                    )),
                                }
                            }
                            out
                        }
                        other => {
                            return Err(self.type_err(
                                "perceptors",
                                span,
                                other,
                                "a list of perceptor names, e.g. [\"ViT-B/32\", \"RN50\"]",
                            ))
                        }
                    };
                let mut out = Vec::new();
                for (sp, name) in items {
                    match canonical_perceptor(&name)
                        .map(str::to_string)
                        .or_else(|| lookup::other_perceptor(&name, &self.base_dir()))
                    {
                        Some(c) => {
                            if !out.contains(&c) {
                                out.push(c)
                            }
                        }
                        None => {
                            return Err(self.doc.err(
                                sp,
                                "perceptors",
                                format!(
                                    "unknown perceptor \"{name}\"; known: {}{}",
                                    PERCEPTORS.join(", "),
                                    suggest(&name, PERCEPTORS.iter().copied())
                                ),
                            ))
                        }
                    }
                }
                out
            }
        };
        for (flag, name) in PYTTI_PERCEPTOR_FLAGS {
            if self.vals.contains_key(flag) {
                let on = self.bool_or(flag, false)?;
                let present = list.iter().any(|p| p == name);
                if on && !present {
                    list.push(name.to_string());
                } else if !on && present {
                    list.retain(|p| p != name);
                }
            }
        }
        if list.is_empty() {
            let span = self
                .vals
                .get("perceptors")
                .map(|(s, _)| s.clone())
                .unwrap_or(0..0);
            return Err(self.doc.err(
                span,
                "perceptors",
                "no perceptor left; enable at least one, e.g. perceptors = [\"ViT-B/32\"]",
            ));
        }
        Ok(list)
    }

    fn resolve(&self) -> Result<Scene> {
        let mut warnings = Vec::new();
        let origin = self.doc.origin;
        let base_dir = self.base_dir();
        let resolve_path = |p: &Path| -> PathBuf {
            let joined = if p.is_absolute() || base_dir.as_os_str().is_empty() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            };
            std::path::absolute(&joined).unwrap_or(joined)
        };

        // --- prompts
        let Some((scenes_span, scenes)) = self.string("scenes")? else {
            return Err(Error::input(format!(
                "{origin}: the setting `scenes` is missing; add e.g. scenes = \"a misty forest \
                 || a city at night\" (scenes separated by ||, prompts by |)"
            )));
        };
        let scene_prefix = self.string_or("scene_prefix", "")?;
        let scene_suffix = self.string_or("scene_suffix", "")?;
        let (mut prompts, w) =
            prompt::parse_scenes_with_warnings(&scenes, &scene_prefix, &scene_suffix)
                .map_err(|e| e.context(self.doc.at(scenes_span.clone())))?;
        warnings.extend(w);
        for scene in &mut prompts {
            for p in scene {
                if let PromptSource::Image(path) = &p.source {
                    p.source = PromptSource::Image(resolve_path(path));
                }
            }
        }

        // --- timeline
        const BIG: u64 = 1 << 40;
        let steps_per_scene = self.int_or("steps_per_scene", 100, 1, BIG)?;
        let steps_per_frame = self.int_or("steps_per_frame", 50, 1, BIG)?;
        if steps_per_scene % steps_per_frame != 0 {
            let span = if self.vals.contains_key("steps_per_scene") {
                self.span_of("steps_per_scene")
            } else {
                self.span_of("steps_per_frame")
            };
            let lo = steps_per_scene / steps_per_frame * steps_per_frame;
            let hi = lo + steps_per_frame;
            let hint = if lo > 0 {
                format!("{lo} or {hi}")
            } else {
                format!("{hi}")
            };
            return Err(self.doc.err(
                span,
                "steps_per_scene",
                format!(
                    "{steps_per_scene}{} is not a multiple of steps_per_frame ({steps_per_frame}); \
                     every scene must last whole frames: use steps_per_scene = {hint}",
                    if self.vals.contains_key("steps_per_scene") {
                        ""
                    } else {
                        " (the default steps_per_scene)"
                    }
                ),
            ));
        }
        let interpolation_steps = self.int_or("interpolation_steps", 0, 0, steps_per_scene)?;
        let transition = self.choice(
            "transition",
            Transition::Centered,
            &[
                ("centered", Transition::Centered),
                ("pytti", Transition::Pytti),
            ],
        )?;
        let save_every = self.int_or("save_every", steps_per_frame, 1, BIG)?;
        let pre_animation_steps = self.int_or("pre_animation_steps", 0, 0, BIG)?;
        let frames_per_second = self.f64_or("frames_per_second", 12.0)?;
        if frames_per_second <= 0.0 {
            let span = self.span_of("frames_per_second");
            return Err(self.doc.err(
                span,
                "frames_per_second",
                "expected a frame rate above 0, e.g. 12",
            ));
        }
        let total = (prompts.len() as u64).checked_mul(steps_per_scene);
        if total.is_none_or(|t| t > BIG) {
            return Err(self.doc.err(
                scenes_span,
                "steps_per_scene",
                "the timeline is too long (scenes × steps_per_scene over 2^40 steps)",
            ));
        }

        // --- image
        let image_model = self.choice(
            "image_model",
            ImageModel::Vqgan,
            &[
                ("VQGAN", ImageModel::Vqgan),
                ("Unlimited Palette", ImageModel::UnlimitedPalette),
            ],
        )?;
        let vqgan_model = self.vqgan_choice(&base_dir, &mut warnings)?;
        let mut width = self.int_or("width", 256, 1, 16384)? as u32;
        let mut height = self.int_or("height", 128, 1, 16384)? as u32;
        if image_model == ImageModel::Vqgan {
            let f = vqgan_model.factor();
            for (key, v) in [("width", &mut width), ("height", &mut height)] {
                if *v % f != 0 {
                    let r = *v / f * f;
                    if r == 0 {
                        let span = self.span_of(key);
                        return Err(self.doc.err(
                            span,
                            key,
                            format!(
                                "{v} is smaller than the VQGAN factor {f} ({}); use at least {f}",
                                vqgan_model.name()
                            ),
                        ));
                    }
                    warnings.push(format!(
                        "{key} {v} is not a multiple of {f} (the {} VQGAN's factor): rounded \
                         down to {r}",
                        vqgan_model.name()
                    ));
                    *v = r;
                }
            }
        }
        let pixel_size = self.int_or("pixel_size", 1, 1, 64)? as u32;
        let perceptors = self.perceptors()?;
        let cutouts = self.int_or("cutouts", 40, 1, 4096)? as u32;
        let cut_pow = self.f64_or("cut_pow", 2.0)?;
        if cut_pow < 0.0 {
            let span = self.span_of("cut_pow");
            return Err(self
                .doc
                .err(span, "cut_pow", "expected a number ≥ 0, e.g. 1"));
        }
        let cutout_border = self.f64_or("cutout_border", 0.25)?;
        if !(0.0..=1.0).contains(&cutout_border) {
            let span = self.span_of("cutout_border");
            return Err(self.doc.err(
                span,
                "cutout_border",
                "expected a fraction from 0 to 1, e.g. 0.25",
            ));
        }
        let default_lr = match (image_model, vqgan_model.is_gumbel()) {
            (ImageModel::UnlimitedPalette, _) => 0.02,
            (ImageModel::Vqgan, true) => 0.15,
            (ImageModel::Vqgan, false) => 0.1,
        };
        let learning_rate = self.f64_or("learning_rate", default_lr)?;
        if learning_rate <= 0.0 {
            let span = self.span_of("learning_rate");
            return Err(self.doc.err(
                span,
                "learning_rate",
                format!("expected a rate above 0; the default here is {default_lr}"),
            ));
        }
        let reset_lr_each_frame = self.bool_or("reset_lr_each_frame", true)?;
        let reencode_each_frame = self.bool_or("reencode_each_frame", true)?;
        let (seed, seed_was_random) = match self.get("seed") {
            None => (random_seed(), true),
            Some(_) => (self.int_or("seed", 0, 0, i64::MAX as u64)?, false),
        };

        // --- motion
        let animation_mode = self.choice(
            "animation_mode",
            AnimationMode::Off,
            &[("off", AnimationMode::Off), ("2D", AnimationMode::TwoD)],
        );
        let animation_mode = match animation_mode {
            Ok(m) => m,
            Err(e) => {
                let s = self
                    .string("animation_mode")?
                    .map(|x| x.1)
                    .unwrap_or_default();
                if ["3d", "video source"].contains(&s.trim().to_lowercase().as_str()) {
                    return Err(e.context(format!(
                        "pytti's \"{s}\" mode is not supported by zoetrope (only \"off\" and \"2D\")"
                    )));
                }
                return Err(e);
            }
        };
        let translate_x = self.param_or("translate_x", 0.0)?;
        let translate_y = self.param_or("translate_y", 0.0)?;
        let rotate_2d = self.param_or("rotate_2d", 0.0)?;
        let zoom_x_2d = self.param_or("zoom_x_2d", 0.0)?;
        let zoom_y_2d = self.param_or("zoom_y_2d", 0.0)?;
        if animation_mode == AnimationMode::Off {
            let moving: Vec<&str> = [
                "translate_x",
                "translate_y",
                "rotate_2d",
                "zoom_x_2d",
                "zoom_y_2d",
            ]
            .into_iter()
            .filter(|k| self.vals.contains_key(*k))
            .collect();
            if !moving.is_empty() {
                warnings.push(format!(
                    "{} set but animation_mode is \"off\": no motion will be applied (set \
                     animation_mode = \"2D\")",
                    moving.join(", ")
                ));
            }
        }
        let infill_mode = self.choice(
            "infill_mode",
            InfillMode::Wrap,
            &[
                ("wrap", InfillMode::Wrap),
                ("mirror", InfillMode::Mirror),
                ("black", InfillMode::Black),
                ("smear", InfillMode::Smear),
            ],
        )?;
        let sampling_mode = self.choice(
            "sampling_mode",
            SamplingMode::Bicubic,
            &[
                ("nearest", SamplingMode::Nearest),
                ("bilinear", SamplingMode::Bilinear),
                ("bicubic", SamplingMode::Bicubic),
            ],
        )?;

        // --- init and stabilisation
        let init_image = match self.string("init_image")? {
            None => None,
            Some((span, s)) if s.trim().is_empty() => {
                return Err(self.doc.err(
                    span,
                    "init_image",
                    "empty path; remove the setting or name an image file",
                ))
            }
            Some((_, s)) => Some(resolve_path(Path::new(s.trim()))),
        };
        let direct_init_weight = self.weight("direct_init_weight")?;
        let direct_stabilization_weight = self.weight("direct_stabilization_weight")?;
        let stabilization_target = self.choice(
            "stabilization_target",
            StabilizationTarget::Previous,
            &[
                ("previous", StabilizationTarget::Previous),
                ("init", StabilizationTarget::Init),
            ],
        )?;
        let semantic_init_weight = self.weight("semantic_init_weight")?;
        let semantic_stabilization_weight = self.weight("semantic_stabilization_weight")?;
        if init_image.is_none() {
            let needs = [
                ("direct_init_weight", direct_init_weight.is_some()),
                ("semantic_init_weight", semantic_init_weight.is_some()),
                (
                    "stabilization_target",
                    stabilization_target == StabilizationTarget::Init,
                ),
            ];
            if let Some((key, _)) = needs.iter().find(|(_, n)| *n) {
                let span = self.span_of(key);
                return Err(self.doc.err(
                    span,
                    key,
                    "needs an init_image; add init_image = \"path/to/image.jpg\"",
                ));
            }
        }

        // --- output and device
        let stem = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "zoetrope".to_string());
        let file_namespace = self.string_or("file_namespace", &stem)?;
        if file_namespace.trim().is_empty()
            || file_namespace.contains(['/', '\\'])
            || file_namespace == "."
            || file_namespace == ".."
        {
            let span = self.span_of("file_namespace");
            return Err(self.doc.err(
                span,
                "file_namespace",
                "expected a plain folder name (no slashes), e.g. \"my_animation\"",
            ));
        }
        let allow_overwrite = self.bool_or("allow_overwrite", false)?;
        let device = self.string_or("device", "auto")?.trim().to_lowercase();
        let device_ok = matches!(device.as_str(), "auto" | "cpu" | "cuda")
            || device.strip_prefix("cuda:").is_some_and(|n| {
                !n.is_empty() && n.len() < 4 && n.bytes().all(|b| b.is_ascii_digit())
            });
        if !device_ok {
            let span = self.span_of("device");
            return Err(self.doc.err(
                span,
                "device",
                format!(
                    "\"{device}\" is not a device; use \"auto\", \"cpu\", \"cuda\" or \"cuda:0\""
                ),
            ));
        }
        let precision = self.choice(
            "precision",
            Precision::Auto,
            &[
                ("auto", Precision::Auto),
                ("fp32", Precision::Fp32),
                ("bf16", Precision::Bf16),
            ],
        )?;
        if self.vals.contains_key("use_mmc") {
            self.bool_or("use_mmc", true)?;
            warnings.push(
                "use_mmc is a pytti loader switch; zoetrope loads CLIP itself and ignores it"
                    .to_string(),
            );
        }

        Ok(Scene {
            scenes,
            scene_prefix,
            scene_suffix,
            steps_per_scene,
            steps_per_frame,
            interpolation_steps,
            transition,
            save_every,
            pre_animation_steps,
            frames_per_second,
            width,
            height,
            pixel_size,
            image_model,
            vqgan_model,
            perceptors,
            cutouts,
            cut_pow,
            cutout_border,
            learning_rate,
            reset_lr_each_frame,
            reencode_each_frame,
            seed,
            animation_mode,
            translate_x,
            translate_y,
            rotate_2d,
            zoom_x_2d,
            zoom_y_2d,
            infill_mode,
            sampling_mode,
            init_image,
            direct_init_weight,
            direct_stabilization_weight,
            stabilization_target,
            semantic_init_weight,
            semantic_stabilization_weight,
            file_namespace,
            allow_overwrite,
            device,
            precision,
            prompts,
            warnings,
            seed_was_random,
            origin: origin.to_string(),
        })
    }
}

/// A seed from the OS-seeded hasher state (no extra dependency), below 2^32
/// so it is easy to type back in.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() & 0xFFFF_FFFF
}
