//! 2D motion between frames (docs/design.md §5).

use super::super::modes::{InfillMode, SamplingMode};
use super::super::reader::Reader;
use super::super::Param;
use crate::Result;
use serde::Serialize;

/// The settings this section reads.
pub const KEYS: &[&str] = &[
    "animation_mode",
    "translate_x",
    "translate_y",
    "rotate_2d",
    "zoom_x_2d",
    "zoom_y_2d",
    "infill_mode",
    "sampling_mode",
];

/// `"off"` or `"2D"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnimationMode {
    #[serde(rename = "off")]
    Off,
    #[serde(rename = "2D")]
    TwoD,
}

/// The per-frame warp.
#[derive(Debug, Clone, Serialize)]
pub struct Motion {
    pub animation_mode: AnimationMode,
    pub translate_x: Param,
    pub translate_y: Param,
    pub rotate_2d: Param,
    pub zoom_x_2d: Param,
    pub zoom_y_2d: Param,
    pub infill_mode: InfillMode,
    pub sampling_mode: SamplingMode,
}

impl Motion {
    /// Reads the motion settings; motion without `animation_mode = "2D"`
    /// is a warning.
    pub(in crate::scene) fn read(r: &Reader, warnings: &mut Vec<String>) -> Result<Motion> {
        let animation_mode = animation_mode(r)?;
        let translate_x = r.param_or("translate_x", 0.0)?;
        let translate_y = r.param_or("translate_y", 0.0)?;
        let rotate_2d = r.param_or("rotate_2d", 0.0)?;
        let zoom_x_2d = r.param_or("zoom_x_2d", 0.0)?;
        let zoom_y_2d = r.param_or("zoom_y_2d", 0.0)?;
        if animation_mode == AnimationMode::Off {
            let moving: Vec<&str> = KEYS[1..6].iter().copied().filter(|k| r.has(k)).collect();
            if !moving.is_empty() {
                warnings.push(format!(
                    "{} set but animation_mode is \"off\": no motion will be applied (set \
                     animation_mode = \"2D\")",
                    moving.join(", ")
                ));
            }
        }
        let infill_mode = r.choice(
            "infill_mode",
            InfillMode::Wrap,
            &[
                ("wrap", InfillMode::Wrap),
                ("mirror", InfillMode::Mirror),
                ("black", InfillMode::Black),
                ("smear", InfillMode::Smear),
            ],
        )?;
        let sampling_mode = r.choice(
            "sampling_mode",
            SamplingMode::Bicubic,
            &[
                ("nearest", SamplingMode::Nearest),
                ("bilinear", SamplingMode::Bilinear),
                ("bicubic", SamplingMode::Bicubic),
            ],
        )?;
        Ok(Motion {
            animation_mode,
            translate_x,
            translate_y,
            rotate_2d,
            zoom_x_2d,
            zoom_y_2d,
            infill_mode,
            sampling_mode,
        })
    }
}

/// `animation_mode`, naming pytti's modes zoetrope does not support.
fn animation_mode(r: &Reader) -> Result<AnimationMode> {
    let mode = r.choice(
        "animation_mode",
        AnimationMode::Off,
        &[("off", AnimationMode::Off), ("2D", AnimationMode::TwoD)],
    );
    match mode {
        Ok(m) => Ok(m),
        Err(e) => {
            let s = r.string("animation_mode")?.map(|x| x.1).unwrap_or_default();
            if ["3d", "video source"].contains(&s.trim().to_lowercase().as_str()) {
                return Err(e.context(format!(
                    "pytti's \"{s}\" mode is not supported by zoetrope (only \"off\" and \"2D\")"
                )));
            }
            Err(e)
        }
    }
}
