//! Guidance: how CLIP sees the image (cutouts) and what it is pulled toward (losses).
//!
//! - [`augment`]: pytti's cutout augmentations (flip, affine, perspective,
//!   colour jitter, erasing), batched: one resample per batch;
//! - [`cutouts`]: pytti's random crop sampler, batched into one resampling op;
//! - [`loss`]: spherical CLIP distances, the prompt weight/stop rule, the
//!   direct (pixel/latent) and semantic losses, and the gradient tricks of the
//!   optimisation step (`clamp_with_grad`, straight-through quantisation);
//! - [`score`]: CLIP similarity of image files to prompts (`zoetrope score`).

pub mod augment;
pub mod cutouts;
pub mod loss;
pub mod score;
