//! Where and how the render runs: device and precision.

use super::super::reader::Reader;
use crate::Result;
use serde::Serialize;

/// The settings this section reads (`use_mmc`, a pytti loader switch, is
/// accepted and ignored with a warning).
pub const KEYS: &[&str] = &["device", "precision", "use_mmc"];

/// Numeric precision of the render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Auto,
    Fp32,
    Bf16,
}

/// The device and precision.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub device: String,
    pub precision: Precision,
}

impl Run {
    /// Reads the device (checked for form) and the precision.
    pub(in crate::scene) fn read(r: &Reader, warnings: &mut Vec<String>) -> Result<Run> {
        let device = r.string_or("device", "auto")?.trim().to_lowercase();
        let device_ok = matches!(device.as_str(), "auto" | "cpu" | "cuda")
            || device.strip_prefix("cuda:").is_some_and(|n| {
                !n.is_empty() && n.len() < 4 && n.bytes().all(|b| b.is_ascii_digit())
            });
        if !device_ok {
            let span = r.span_of("device");
            return Err(r.doc.err(
                span,
                "device",
                format!(
                    "\"{device}\" is not a device; use \"auto\", \"cpu\", \"cuda\" or \"cuda:0\""
                ),
            ));
        }
        let precision = r.choice(
            "precision",
            Precision::Auto,
            &[
                ("auto", Precision::Auto),
                ("fp32", Precision::Fp32),
                ("bf16", Precision::Bf16),
            ],
        )?;
        if r.has("use_mmc") {
            r.bool_or("use_mmc", true)?;
            warnings.push(
                "use_mmc is a pytti loader switch; zoetrope loads CLIP itself and ignores it"
                    .to_string(),
            );
        }
        Ok(Run { device, precision })
    }
}
