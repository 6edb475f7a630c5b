//! The warp's two choice settings, `sampling_mode` and `infill_mode`.
//!
//! They live with the scene (not the warp, which adds its torch specifics)
//! so that the scene loader stays free of libtorch for the fuzz crate.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the warp interpolates between pixels (`sampling_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    /// The nearest source pixel: crisp, jagged under rotation.
    Nearest,
    /// Linear interpolation of the four neighbours: soft, blurs over many frames.
    Bilinear,
    /// Cubic convolution of 4×4 neighbours: sharpest; pytti's default.
    #[default]
    Bicubic,
}

impl SamplingMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [SamplingMode; 3] = [Self::Nearest, Self::Bilinear, Self::Bicubic];

    /// The name used in scene files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
        }
    }
}

impl fmt::Display for SamplingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplingMode {
    type Err = Error;
    /// Parses the exact scene-file names `nearest`, `bilinear`, `bicubic`.
    fn from_str(s: &str) -> Result<Self> {
        parse_name(&Self::ALL, Self::name, "sampling_mode", s)
    }
}

/// How pixels that the warp uncovers are filled (`infill_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfillMode {
    /// The frame tiles the plane: content leaving one side re-enters the other.
    #[default]
    Wrap,
    /// The frame is reflected about its border.
    Mirror,
    /// Uncovered pixels are zero (black).
    Black,
    /// Uncovered pixels repeat the nearest edge pixel.
    Smear,
}

impl InfillMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [InfillMode; 4] = [Self::Wrap, Self::Mirror, Self::Black, Self::Smear];

    /// The name used in scene files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wrap => "wrap",
            Self::Mirror => "mirror",
            Self::Black => "black",
            Self::Smear => "smear",
        }
    }
}

impl fmt::Display for InfillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InfillMode {
    type Err = Error;
    /// Parses the exact scene-file names `wrap`, `mirror`, `black`, `smear`.
    fn from_str(s: &str) -> Result<Self> {
        parse_name(&Self::ALL, Self::name, "infill_mode", s)
    }
}

/// The member of `all` whose `name` is exactly `value`, else an error naming
/// the setting, the closest name and all of them.
fn parse_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    setting: &str,
    value: &str,
) -> Result<T> {
    let names: Vec<&str> = all.iter().map(|m| name(*m)).collect();
    all.iter()
        .copied()
        .find(|m| name(*m) == value)
        .ok_or_else(|| unknown_name(setting, value, &names))
}

fn unknown_name(setting: &str, value: &str, names: &[&str]) -> Error {
    let closest = crate::catalog::closest(value, names.iter().copied())
        .map(|n| format!(" (did you mean \"{n}\"?)"))
        .unwrap_or_default();
    Error::input(format!(
        "{setting} = \"{value}\" is not a known mode{closest}; use one of: {}",
        names.join(", ")
    ))
}
