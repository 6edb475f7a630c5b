//! The init image and the losses toward it and toward the previous frame
//! (docs/design.md §6).

use super::super::direct::{parse_direct_image_prompts, DirectImagePrompt};
use super::super::reader::Reader;
use super::super::WeightSpec;
use crate::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The settings this section reads.
pub const KEYS: &[&str] = &[
    "init_image",
    "direct_init_weight",
    "direct_stabilization_weight",
    "stabilization_target",
    "semantic_init_weight",
    "semantic_stabilization_weight",
    "smoothing_weight",
    "direct_image_prompts",
];

/// What `direct_stabilization_weight` pulls toward after the first warp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StabilizationTarget {
    Previous,
    Init,
}

/// The init image and the image losses.
#[derive(Debug, Clone, Serialize)]
pub struct Stabilization {
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
    /// pytti's `smoothing_weight`: the total-variation loss on the image
    /// (`crate::guidance::loss::tv_loss`). `None` when absent or the constant
    /// 0 (pytti skips the loss then), so renders without it are unchanged.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weight_opt"
    )]
    pub smoothing_weight: Option<WeightSpec>,
    /// pytti's `direct_image_prompts` (docs/design.md §6a), paths resolved
    /// against the scene file's folder; serialized as written.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ser_direct_images"
    )]
    pub direct_image_prompts: Vec<DirectImagePrompt>,
}

/// `direct_image_prompts` serializes as written, entries joined by ` | `.
fn ser_direct_images<S: serde::Serializer>(
    d: &[DirectImagePrompt],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let raw: Vec<&str> = d.iter().map(|d| d.raw.as_str()).collect();
    s.serialize_str(&raw.join(" | "))
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

impl Stabilization {
    /// Reads the init image and the weights; the init losses need an
    /// init image.
    pub(in crate::scene) fn read(r: &Reader) -> Result<Stabilization> {
        let init_image = match r.string("init_image")? {
            None => None,
            Some((span, s)) if s.trim().is_empty() => {
                return Err(r.doc.err(
                    span,
                    "init_image",
                    "empty path; remove the setting or name an image file",
                ))
            }
            Some((_, s)) => Some(r.resolve_path(Path::new(s.trim()))),
        };
        let direct_init_weight = r.weight("direct_init_weight")?;
        let direct_stabilization_weight = r.weight("direct_stabilization_weight")?;
        let stabilization_target = r.choice(
            "stabilization_target",
            StabilizationTarget::Previous,
            &[
                ("previous", StabilizationTarget::Previous),
                ("init", StabilizationTarget::Init),
            ],
        )?;
        let semantic_init_weight = r.weight("semantic_init_weight")?;
        let semantic_stabilization_weight = r.weight("semantic_stabilization_weight")?;
        let smoothing_weight = r
            .weight("smoothing_weight")?
            .filter(|w| w.weight.as_constant() != Some(0.0));
        let direct_image_prompts = read_direct_images(r)?;
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
                let span = r.span_of(key);
                return Err(r.doc.err(
                    span,
                    key,
                    "needs an init_image; add init_image = \"path/to/image.jpg\"",
                ));
            }
        }
        Ok(Stabilization {
            init_image,
            direct_init_weight,
            direct_stabilization_weight,
            stabilization_target,
            semantic_init_weight,
            semantic_stabilization_weight,
            smoothing_weight,
            direct_image_prompts,
        })
    }
}

/// Reads `direct_image_prompts`; errors carry the setting's file position.
fn read_direct_images(r: &Reader) -> Result<Vec<DirectImagePrompt>> {
    let Some((span, text)) = r.string("direct_image_prompts")? else {
        return Ok(Vec::new());
    };
    let mut out = parse_direct_image_prompts(&text)
        .map_err(|m| crate::Error::input(m).context(r.doc.at(span)))?;
    for d in &mut out {
        d.path = r.resolve_path(&d.path);
        if let Some((mask, _)) = &mut d.mask {
            *mask = r.resolve_path(mask);
        }
    }
    Ok(out)
}
