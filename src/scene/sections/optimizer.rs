//! The optimiser: learning rate, per-frame resets and the seed.

use super::super::reader::Reader;
use super::image::{Image, ImageModel};
use crate::Result;
use serde::Serialize;

/// The settings this section reads.
pub const KEYS: &[&str] = &[
    "learning_rate",
    "reset_lr_each_frame",
    "reencode_each_frame",
    "seed",
];

/// How the image is optimised.
#[derive(Debug, Clone, Serialize)]
pub struct Optimizer {
    /// Resolved: the given value or the image model's default.
    pub learning_rate: f64,
    pub reset_lr_each_frame: bool,
    pub reencode_each_frame: bool,
    /// Resolved: the given seed or a random one (see `Scene::seed_was_random`).
    pub seed: u64,
}

impl Optimizer {
    /// Reads the optimiser settings; the default learning rate depends on
    /// the image model. Also returns whether the seed was drawn.
    pub(in crate::scene) fn read(r: &Reader, image: &Image) -> Result<(Optimizer, bool)> {
        let default_lr = match (image.image_model, image.vqgan_model.is_gumbel()) {
            // pytti's DifferentiableImage default, which PixelImage keeps.
            (ImageModel::UnlimitedPalette | ImageModel::LimitedPalette, _) => 0.02,
            (ImageModel::Vqgan, true) => 0.15,
            (ImageModel::Vqgan, false) => 0.1,
        };
        let learning_rate = r.f64_or("learning_rate", default_lr)?;
        if learning_rate <= 0.0 {
            let span = r.span_of("learning_rate");
            return Err(r.doc.err(
                span,
                "learning_rate",
                format!("expected a rate above 0; the default here is {default_lr}"),
            ));
        }
        let reset_lr_each_frame = r.bool_or("reset_lr_each_frame", true)?;
        let reencode_each_frame = r.bool_or("reencode_each_frame", true)?;
        let (seed, seed_was_random) = match r.get("seed") {
            None => (random_seed(), true),
            Some(_) => (r.int_or("seed", 0, 0, i64::MAX as u64)?, false),
        };
        let optimizer = Optimizer {
            learning_rate,
            reset_lr_each_frame,
            reencode_each_frame,
            seed,
        };
        Ok((optimizer, seed_was_random))
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
