//! The image being optimised: its model (VQGAN, Unlimited Palette pixels or
//! pytti's Limited Palette), its size and the Limited Palette's settings.

use super::super::reader::{suggest, Reader};
use crate::catalog::{VqganModel, VQGAN_MODEL_NAMES};
use crate::Result;
use serde::Serialize;
use std::path::Path;

/// The settings this section reads.
pub const KEYS: &[&str] = &[
    "width",
    "height",
    "pixel_size",
    "image_model",
    "vqgan_model",
    "palette_size",
    "palettes",
    "gamma",
    "hdr_weight",
    "palette_normalization_weight",
    "lock_palette",
    "target_palette",
    "random_initial_palette",
    "show_palette",
];

/// What is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageModel {
    /// The VQGAN latent grid `z`.
    #[serde(rename = "VQGAN")]
    Vqgan,
    /// RGB pixels directly.
    #[serde(rename = "Unlimited Palette")]
    UnlimitedPalette,
    /// pytti's `PixelImage`: per pixel a brightness and a choice among
    /// `palettes` palettes of `palette_size` colours each
    /// (`crate::guidance::palette`).
    #[serde(rename = "Limited Palette")]
    LimitedPalette,
}

impl ImageModel {
    /// The name a scene file uses.
    pub fn name(self) -> &'static str {
        match self {
            ImageModel::Vqgan => "VQGAN",
            ImageModel::UnlimitedPalette => "Unlimited Palette",
            ImageModel::LimitedPalette => "Limited Palette",
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

/// The image's model and size.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// After rounding down to the VQGAN factor.
    pub width: u32,
    pub height: u32,
    pub pixel_size: u32,
    pub image_model: ImageModel,
    pub vqgan_model: VqganChoice,
    /// The Limited Palette's settings (read whatever the model; used only
    /// by `image_model = "Limited Palette"`).
    #[serde(flatten)]
    pub palette: PaletteSettings,
}

/// pytti's Limited Palette settings (its `PixelImage` and the renderer's
/// use of it), with pytti-core's `default.yaml` defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaletteSettings {
    /// Colours in each palette (pytti `palette_size`, default 5).
    pub palette_size: u32,
    /// Number of palettes a pixel chooses among (pytti `palettes`, default 20).
    pub palettes: u32,
    /// Exponent of the initial palette ramp and of the HDR loss's brightness
    /// targets (default 1).
    pub gamma: f64,
    /// Weight of the HDR loss (0 turns it off; default 0.01).
    pub hdr_weight: f64,
    /// Weight of the palette normalisation loss (default 0.2).
    pub palette_normalization_weight: f64,
    /// Keep the initial palette fixed (default false).
    pub lock_palette: bool,
    /// An image whose colours become the (locked) palette; resolved against
    /// the scene file's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_palette: Option<std::path::PathBuf>,
    /// Start from uniformly random palettes instead of grey ramps.
    pub random_initial_palette: bool,
    /// Write every frame's palettes as `palettes/palette_NNNNN.png` in the run folder.
    pub show_palette: bool,
}

impl PaletteSettings {
    /// Reads the Limited Palette settings; sizes and weights are checked
    /// whatever the image model (a typo is a typo).
    fn read(r: &Reader) -> Result<PaletteSettings> {
        let d = PaletteSettings::default();
        let palette_size = r.int_or("palette_size", d.palette_size.into(), 1, 4096)? as u32;
        let palettes = r.int_or("palettes", d.palettes.into(), 1, 4096)? as u32;
        let gamma = r.f64_or("gamma", d.gamma)?;
        if gamma <= 0.0 {
            return Err(r.doc.err(
                r.span_of("gamma"),
                "gamma",
                format!("{gamma}: expected a number above 0 (pytti's default is 1)"),
            ));
        }
        let weight = |key: &str, default: f64| -> Result<f64> {
            let w = r.f64_or(key, default)?;
            if w < 0.0 {
                return Err(r.doc.err(
                    r.span_of(key),
                    key,
                    format!("{w}: expected 0 (off) or a positive weight"),
                ));
            }
            Ok(w)
        };
        let hdr_weight = weight("hdr_weight", d.hdr_weight)?;
        let palette_normalization_weight = weight(
            "palette_normalization_weight",
            d.palette_normalization_weight,
        )?;
        if palettes == 1 && palette_normalization_weight != 0.0 {
            return Err(r.doc.err(
                r.span_of("palettes"),
                "palettes",
                "one palette leaves the palette normalisation loss undefined (pytti's gives \
                 NaN); use at least 2 palettes or set palette_normalization_weight = 0",
            ));
        }
        let target_palette = match r.string("target_palette")? {
            None => None,
            Some((_, s)) if s.trim().is_empty() => None, // pytti's "" = none
            Some((_, s)) => Some(r.resolve_path(Path::new(s.trim()))),
        };
        Ok(PaletteSettings {
            palette_size,
            palettes,
            gamma,
            hdr_weight,
            palette_normalization_weight,
            lock_palette: r.bool_or("lock_palette", false)?,
            target_palette,
            random_initial_palette: r.bool_or("random_initial_palette", false)?,
            show_palette: r.bool_or("show_palette", false)?,
        })
    }

    /// The settings whose value differs from pytti's default, by name (a
    /// preset or a recorded `settings.toml` writes them all out).
    pub fn changed(&self) -> Vec<&'static str> {
        let d = PaletteSettings::default();
        [
            ("palette_size", self.palette_size != d.palette_size),
            ("palettes", self.palettes != d.palettes),
            ("gamma", self.gamma != d.gamma),
            ("hdr_weight", self.hdr_weight != d.hdr_weight),
            (
                "palette_normalization_weight",
                self.palette_normalization_weight != d.palette_normalization_weight,
            ),
            ("lock_palette", self.lock_palette != d.lock_palette),
            ("target_palette", self.target_palette != d.target_palette),
            (
                "random_initial_palette",
                self.random_initial_palette != d.random_initial_palette,
            ),
            ("show_palette", self.show_palette != d.show_palette),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

impl Default for PaletteSettings {
    /// pytti-core's `default.yaml` values.
    fn default() -> Self {
        PaletteSettings {
            palette_size: 5,
            palettes: 20,
            gamma: 1.0,
            hdr_weight: 0.01,
            palette_normalization_weight: 0.2,
            lock_palette: false,
            target_palette: None,
            random_initial_palette: false,
            show_palette: false,
        }
    }
}

impl Image {
    /// Reads the image settings; sizes are rounded down to the VQGAN factor
    /// (with a warning).
    pub(in crate::scene) fn read(r: &Reader, warnings: &mut Vec<String>) -> Result<Image> {
        let image_model = r.choice(
            "image_model",
            ImageModel::Vqgan,
            &[
                ("VQGAN", ImageModel::Vqgan),
                ("Unlimited Palette", ImageModel::UnlimitedPalette),
                ("Limited Palette", ImageModel::LimitedPalette),
            ],
        )?;
        let vqgan_model = vqgan_choice(r, warnings)?;
        let mut width = r.int_or("width", 256, 1, 16384)? as u32;
        let mut height = r.int_or("height", 128, 1, 16384)? as u32;
        if image_model == ImageModel::Vqgan {
            let f = vqgan_model.factor();
            for (key, v) in [("width", &mut width), ("height", &mut height)] {
                if *v % f != 0 {
                    let rounded = *v / f * f;
                    if rounded == 0 {
                        return Err(r.doc.err(
                            r.span_of(key),
                            key,
                            format!(
                                "{v} is smaller than the VQGAN factor {f} ({}); use at least {f}",
                                vqgan_model.name()
                            ),
                        ));
                    }
                    warnings.push(format!(
                        "{key} {v} is not a multiple of {f} (the {} VQGAN's factor): rounded \
                         down to {rounded}",
                        vqgan_model.name()
                    ));
                    *v = rounded;
                }
            }
        }
        let pixel_size = r.int_or("pixel_size", 1, 1, 64)? as u32;
        let palette = PaletteSettings::read(r)?;
        if image_model != ImageModel::LimitedPalette {
            for key in palette.changed() {
                warnings.push(format!(
                    "{key} only affects image_model = \"Limited Palette\"; this scene uses \
                     \"{}\"",
                    image_model.name()
                ));
            }
        }
        Ok(Image {
            width,
            height,
            pixel_size,
            image_model,
            vqgan_model,
            palette,
        })
    }
}

/// `vqgan_model`: pytti's six names, a weights-manifest name, or a path.
fn vqgan_choice(r: &Reader, warnings: &mut Vec<String>) -> Result<VqganChoice> {
    let Some((span, s)) = r.string("vqgan_model")? else {
        return Ok(VqganChoice::Named(VqganModel::Imagenet));
    };
    let wanted = s.trim();
    if let Some(m) = VqganModel::find(wanted) {
        return Ok(VqganChoice::Named(m));
    }
    let layout = |path: &Path| {
        r.lookup
            .vqgan_file_layout(path)
            .map_err(|e| r.doc.err(span.clone(), "vqgan_model", e.message))
    };
    if wanted.ends_with(".safetensors") || wanted.contains('/') {
        let p = Path::new(wanted);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            r.base_dir().join(p)
        };
        if !path.is_file() {
            return Err(r.doc.err(
                span,
                "vqgan_model",
                format!(
                    "the weights file {} does not exist (paths are relative to the scene \
                     file's folder)",
                    path.display()
                ),
            ));
        }
        let (factor, gumbel) = layout(&path)?;
        return Ok(VqganChoice::Other {
            name: path.display().to_string(),
            factor,
            gumbel,
        });
    }
    if let Some((name, path)) = r.lookup.vqgan_by_name(wanted) {
        return Ok(match path {
            Some(path) => {
                let (factor, gumbel) = layout(&path)?;
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
    Err(r.doc.err(
        span,
        "vqgan_model",
        format!(
            "\"{s}\" is not one of {} (or a weights-manifest name, or a path to a \
             .safetensors file){}",
            VQGAN_MODEL_NAMES
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            suggest(&s, VQGAN_MODEL_NAMES)
        ),
    ))
}
