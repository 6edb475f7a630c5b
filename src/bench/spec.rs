//! The benchmark's configurations (`a`, `b`, `c` and their small
//! variants): sizes, perceptors, VQGAN and prompts, and the memory
//! estimate's workload for each.

use crate::models::clip::{ClipConfig, VisionConfig};
use crate::models::tiny::{tiny_clip_config, tiny_vqgan_config};
use crate::models::vqgan::VqganConfig;
use crate::render::memory::{ImageArch, PerceptorArch, Workload};
use crate::scene::Precision;
use crate::tuning::Tuning;
use crate::{Error, Result};

/// The prompts of every configuration: the seed scene's one positive prompt
/// and its two negative prompts with stops.
pub const PROMPTS: [&str; 3] = [
    "a photograph of a lighthouse on a rocky coast at dawn",
    "text:-1:-.9",
    "watermark:-1:-.9",
];

/// `cut_pow` of every configuration (the VQGAN+CLIP notebooks' default 1).
pub const CUT_POW: f64 = 1.0;

/// One benchmark configuration: everything that sets the step's work.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// `a`, `b` or `c`.
    pub name: String,
    /// Whether this is the small (CPU/CI) variant.
    pub small: bool,
    pub width: i64,
    pub height: i64,
    pub cutouts: usize,
    /// `(name, architecture)` of each perceptor, in order.
    pub perceptors: Vec<(String, ClipConfig)>,
    /// The VQGAN's name and architecture.
    pub vqgan_name: String,
    pub vqgan: VqganConfig,
}

/// A tiny ModifiedResNet CLIP (RN50's structure with one Bottleneck per stage
/// and stem width 8) for the small variant of configuration `c`.
fn tiny_rn_config() -> ClipConfig {
    let mut c = tiny_clip_config();
    c.vision = VisionConfig::ResNet {
        layers: [1, 1, 1, 1],
        width: 8,
        heads: 4,
    };
    c
}

impl BenchSpec {
    /// The configuration named `name` (`a`, `b`, `c`), full size or small.
    pub fn named(name: &str, small: bool) -> Result<BenchSpec> {
        let name = name.trim().to_ascii_lowercase();
        let (vit, rn, vqgan_name, vqgan) = if small {
            (
                ("tiny-ViT".to_string(), tiny_clip_config()),
                ("tiny-RN".to_string(), tiny_rn_config()),
                "tiny-vqgan".to_string(),
                tiny_vqgan_config(),
            )
        } else {
            (
                ("ViT-B/32".to_string(), ClipConfig::vit_b32()),
                ("RN50".to_string(), ClipConfig::rn50()),
                "imagenet".to_string(),
                VqganConfig::named("imagenet")?,
            )
        };
        let (w_a, h_a, n_a, side_b, n_b) = if small {
            (64, 32, 8, 64, 8)
        } else {
            (256, 128, 60, 512, 64)
        };
        let (width, height, cutouts, perceptors) = match name.as_str() {
            "a" => (w_a, h_a, n_a, vec![vit]),
            "b" => (side_b, side_b, n_b, vec![vit]),
            "c" => (side_b, side_b, n_b, vec![vit, rn]),
            other => {
                return Err(Error::input(format!(
                    "unknown bench configuration \"{other}\"; use a (the seed scene, 256×128), b (512×512) or c (512×512 with ViT-B/32 + RN50), or all"
                )))
            }
        };
        Ok(BenchSpec {
            name,
            small,
            width,
            height,
            cutouts,
            perceptors,
            vqgan_name,
            vqgan,
        })
    }
}

/// The workload of `zoetrope bench`'s configuration `spec` (models built in
/// memory with random weights: no file is read).
pub fn bench_workload(spec: &BenchSpec, precision: Precision, tuning: Tuning) -> Workload {
    Workload {
        width: spec.width,
        height: spec.height,
        cutouts: spec.cutouts as i64,
        passes: 1,
        augment: false,
        cutout_border: 0.25,
        perceptors: spec
            .perceptors
            .iter()
            .map(|(name, c)| PerceptorArch {
                name: name.clone(),
                config: Some(c.clone()),
                file_bytes: Some(0),
            })
            .collect(),
        image: ImageArch::Vqgan {
            name: spec.vqgan_name.clone(),
            config: Some(spec.vqgan.clone()),
        },
        precision,
        tuning,
    }
}
