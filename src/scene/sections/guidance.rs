//! What steers the image: the CLIP perceptors and their cutouts.

use super::super::lookup::perceptor_path;
use super::super::reader::{suggest, Reader};
use crate::catalog::{canonical_perceptor, PERCEPTORS, PYTTI_PERCEPTOR_FLAGS};
use crate::Result;
use serde::Serialize;
use std::ops::Range;
use toml::de::DeValue;

/// The settings this section reads (pytti's perceptor flags, also read
/// here, come from the catalog).
pub const KEYS: &[&str] = &[
    "perceptors",
    "cutouts",
    "cut_pow",
    "cutout_border",
    "border_mode",
    "cutout_augs",
    "gradient_accumulation_steps",
];

/// pytti's `border_mode` names: what a crop sees where it hangs over the
/// image edge (`clamp` keeps crops inside the image; `mirror`, `wrap`,
/// `black` and `smear` pad the image by `cutout_border` with reflection,
/// wrap-around, zeros or the repeated edge).
pub const BORDER_MODES: [&str; 5] = ["clamp", "mirror", "wrap", "black", "smear"];

/// `cutout_augs` values: `pytti` augments every cutout as pytti-core's
/// default sampler does (flip, affine, perspective, colour jitter, random
/// erasing; docs/augmentations.md), `none` leaves the cutouts as cut.
pub const CUTOUT_AUGS: [&str; 2] = ["pytti", "none"];

/// The perceptors and how they look at the image.
#[derive(Debug, Clone, Serialize)]
pub struct Guidance {
    /// Canonical names from [`PERCEPTORS`], other model names from the weights
    /// manifest, or absolute paths of `.safetensors` files; without duplicates.
    pub perceptors: Vec<String>,
    pub cutouts: u32,
    pub cut_pow: f64,
    pub cutout_border: f64,
    /// One of [`BORDER_MODES`]; `mirror` unless the scene says otherwise.
    pub border_mode: String,
    /// One of [`CUTOUT_AUGS`]; `pytti` (on, as in pytti) unless the scene
    /// says otherwise.
    pub cutout_augs: String,
    /// pytti's `gradient_accumulation_steps`: the passes a step's cutouts
    /// are split into (1 to `cutouts`; 1: one pass).
    pub gradient_accumulation_steps: u32,
}

impl Guidance {
    /// Reads the perceptors (with pytti's flags) and the cutout settings.
    pub(in crate::scene) fn read(r: &Reader) -> Result<Guidance> {
        let perceptors = perceptors(r)?;
        let cutouts = r.int_or("cutouts", 40, 1, 4096)? as u32;
        let cut_pow = r.f64_or("cut_pow", 2.0)?;
        if cut_pow < 0.0 {
            let span = r.span_of("cut_pow");
            return Err(r.doc.err(span, "cut_pow", "expected a number ≥ 0, e.g. 1"));
        }
        let cutout_border = r.f64_or("cutout_border", 0.25)?;
        if !(0.0..=1.0).contains(&cutout_border) {
            let span = r.span_of("cutout_border");
            return Err(r.doc.err(
                span,
                "cutout_border",
                "expected a fraction from 0 to 1, e.g. 0.25",
            ));
        }
        let modes = BORDER_MODES.map(|m| (m, m));
        let border_mode = r.choice("border_mode", "mirror", &modes)?.to_string();
        let augs = CUTOUT_AUGS.map(|m| (m, m));
        let cutout_augs = r.choice("cutout_augs", "pytti", &augs)?.to_string();
        let gradient_accumulation_steps =
            r.int_or("gradient_accumulation_steps", 1, 1, 4096)? as u32;
        if gradient_accumulation_steps > cutouts {
            let span = r.span_of("gradient_accumulation_steps");
            return Err(r.doc.err(
                span,
                "gradient_accumulation_steps",
                format!(
                    "{gradient_accumulation_steps} passes for {cutouts} cutouts: each pass needs at least one cutout; use at most {cutouts} (or raise cutouts)"
                ),
            ));
        }
        Ok(Guidance {
            perceptors,
            cutouts,
            cut_pow,
            cutout_border,
            border_mode,
            cutout_augs,
            gradient_accumulation_steps,
        })
    }
}

/// Perceptor names as written, each with its span.
type Items = Vec<(Range<usize>, String)>;

/// The `perceptors` value as written: one name or a list of names.
fn perceptor_items(r: &Reader) -> Result<Option<Items>> {
    let Some((span, v)) = r.get("perceptors") else {
        return Ok(None);
    };
    let items = match v {
        DeValue::String(s) => vec![(span, s.to_string())],
        DeValue::Array(a) => {
            let mut out = Vec::new();
            for item in a.iter() {
                match item.get_ref() {
                    DeValue::String(s) => out.push((item.span(), s.to_string())),
                    other => {
                        return Err(r.type_err(
                            "perceptors",
                            item.span(),
                            other,
                            "perceptor names as strings, e.g. [\"ViT-B/32\", \"RN50\"]",
                        ))
                    }
                }
            }
            out
        }
        other => {
            return Err(r.type_err(
                "perceptors",
                span,
                other,
                "a list of perceptor names, e.g. [\"ViT-B/32\", \"RN50\"]",
            ))
        }
    };
    Ok(Some(items))
}

/// `perceptors`, canonicalised, then edited by pytti's flags.
fn perceptors(r: &Reader) -> Result<Vec<String>> {
    let mut list: Vec<String> = match perceptor_items(r)? {
        None => vec!["ViT-B/32".to_string()],
        Some(items) => {
            let mut out = Vec::new();
            for (sp, name) in items {
                let found = canonical_perceptor(&name)
                    .map(str::to_string)
                    .or_else(|| perceptor_path(&name, &r.base_dir()))
                    .or_else(|| r.lookup.other_perceptor(name.trim()));
                match found {
                    Some(c) => {
                        if !out.contains(&c) {
                            out.push(c)
                        }
                    }
                    None => {
                        return Err(r.doc.err(
                            sp,
                            "perceptors",
                            format!(
                                "unknown perceptor \"{name}\"; known: {}{}",
                                PERCEPTORS.join(", "),
                                suggest(&name, PERCEPTORS)
                            ),
                        ))
                    }
                }
            }
            out
        }
    };
    for (flag, name) in PYTTI_PERCEPTOR_FLAGS {
        if r.has(flag) {
            let on = r.bool_or(flag, false)?;
            let present = list.iter().any(|p| p == name);
            if on && !present {
                list.push(name.to_string());
            } else if !on && present {
                list.retain(|p| p != name);
            }
        }
    }
    if list.is_empty() {
        let span = r
            .vals
            .get("perceptors")
            .map(|(s, _)| s.clone())
            .unwrap_or(0..0);
        return Err(r.doc.err(
            span,
            "perceptors",
            "no perceptor left; enable at least one, e.g. perceptors = [\"ViT-B/32\"]",
        ));
    }
    Ok(list)
}
