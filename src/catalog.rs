//! The model catalog: every model name zoetrope knows, their spellings and
//! pytti's flag names, in one tch-free place (docs/design.md §1).
//!
//! `scene`, `models`, `grid` and the command line all ask it: the CLIP
//! perceptor names ([`PERCEPTORS`]), pytti's perceptor flags
//! ([`PYTTI_PERCEPTOR_FLAGS`]), the VQGAN models ([`VqganModel`],
//! [`VQGAN_MODEL_NAMES`]), the one name normaliser ([`normalize`]) and the
//! one "did you mean" ([`closest`]). Adding a model or a spelling touches
//! this file only (plus its architecture in `models/` for a released model).

use crate::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The nine released OpenAI CLIP models, in the order users know them: the
/// scene file's perceptor names.
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

/// pytti's boolean flag names for the perceptors: `(flag, perceptor)`.
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

/// A model name reduced to lower-case ASCII letters and digits, so that
/// `ViT-B/32`, `ViTB32` (pytti's flag), `ViT-B32` and `vit-b-32` compare
/// equal, as do `ViT-L/14@336px` and `ViTL14_336px`, and `imagenet_1024`
/// and `imagenet-1024`. The one normaliser for model names.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The [`PERCEPTORS`] name `name` spells (see [`normalize`]).
pub fn canonical_perceptor(name: &str) -> Option<&'static str> {
    let n = normalize(name);
    PERCEPTORS.iter().find(|p| normalize(p) == n).copied()
}

/// How similar (Jaro-Winkler, on [`normalize`]d text) a candidate must be
/// to be suggested.
pub const SUGGEST_THRESHOLD: f64 = 0.7;

/// The candidate closest to an unknown `name`, for "did you mean": the one
/// "did you mean" of the crate (settings, modes, expression names, model
/// names). Names are compared [`normalize`]d; `None` when nothing scores
/// above [`SUGGEST_THRESHOLD`].
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let n = normalize(name);
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&n, &normalize(c)), c))
        .filter(|(s, _)| *s > SUGGEST_THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
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

/// The `vqgan_model` names of the scene file, in the order the docs list them.
pub const VQGAN_MODEL_NAMES: [&str; 6] = [
    "imagenet",
    "imagenet_1024",
    "coco",
    "wikiart",
    "sflckr",
    "openimages",
];

impl VqganModel {
    /// All models with their setting names.
    pub const ALL: [(&'static str, VqganModel); 6] = [
        (VQGAN_MODEL_NAMES[0], VqganModel::Imagenet),
        (VQGAN_MODEL_NAMES[1], VqganModel::Imagenet1024),
        (VQGAN_MODEL_NAMES[2], VqganModel::Coco),
        (VQGAN_MODEL_NAMES[3], VqganModel::Wikiart),
        (VQGAN_MODEL_NAMES[4], VqganModel::Sflckr),
        (VQGAN_MODEL_NAMES[5], VqganModel::Openimages),
    ];

    /// The model `name` spells (see [`normalize`]).
    pub fn find(name: &str) -> Option<VqganModel> {
        let n = normalize(name);
        Self::ALL
            .iter()
            .find(|(m, _)| normalize(m) == n)
            .map(|(_, v)| *v)
    }

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

/// Model references a scene cannot resolve from the catalog alone.
pub trait ModelLookup {
    /// A perceptor that is not one of the nine OpenAI names: the canonical
    /// name of a CLIP model the weights know (such as the untrained
    /// `tiny-clip`), or `None`.
    fn other_perceptor(&self, name: &str) -> Option<String>;

    /// A VQGAN the weights know by name: its canonical name, and its file
    /// when present.
    fn vqgan_by_name(&self, name: &str) -> Option<(String, Option<PathBuf>)>;

    /// Factor and quantiser (gumbel or not) of a VQGAN weights file.
    fn vqgan_file_layout(&self, path: &Path) -> Result<(u32, bool)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_normalise_to_one_name() {
        assert_eq!(canonical_perceptor("vitb32"), Some("ViT-B/32"));
        assert_eq!(canonical_perceptor("ViTL14_336px"), Some("ViT-L/14@336px"));
        assert_eq!(canonical_perceptor("nope"), None);
        assert_eq!(
            VqganModel::find("Imagenet-1024"),
            Some(VqganModel::Imagenet1024)
        );
        for (flag, name) in PYTTI_PERCEPTOR_FLAGS {
            assert_eq!(canonical_perceptor(flag), Some(name));
        }
    }

    #[test]
    fn closest_suggests_near_names_only() {
        assert_eq!(closest("cut_pwo", ["cut_pow", "seed"]), Some("cut_pow"));
        assert_eq!(closest("imagnet", VQGAN_MODEL_NAMES), Some("imagenet"));
        assert_eq!(closest("zzzz", ["cut_pow"]), None);
    }
}
