//! Guidance: how CLIP sees the image (cutouts), what it is pulled toward
//! (losses), and the guide that turns both into optimisation steps.
//!
//! - [`guide`]: the [`Guide`](guide::Guide) (perceptors with every prompt
//!   embedded), its loss targets and the weights of one step;
//! - [`step`]: one optimisation step, its host half (crop placements, weight
//!   table) and its device half;
//! - [`image`]: the optimised image state (VQGAN latent, Palette pixels or
//!   the Limited Palette);
//! - [`palette`]: pytti's Limited Palette image (`PixelImage`);
//! - [`adam`]: the optimiser, with state that can be saved and restored;
//! - [`embed`]: prompt embedding and OpenAI CLIP's image preprocessing;
//! - [`phases`]: the step's phase profiler (`zoetrope bench --breakdown`);
//! - [`replay`]: CUDA-graph capture and replay of the step;
//! - [`augment`]: pytti's cutout augmentations (flip, affine, perspective,
//!   colour jitter, erasing), batched: one resample per batch;
//! - [`cutouts`]: pytti's random crop sampler, batched into one resampling op;
//! - [`loss`]: spherical CLIP distances, the prompt weight/stop rule, the
//!   direct (pixel/latent) and semantic losses, and the gradient tricks of the
//!   optimisation step (`clamp_with_grad`, straight-through quantisation);
//! - [`mask`]: prompt masks, the per-crop weight factors and stop floors;
//! - [`located`]: location-aware image prompts (each crop compared with the
//!   image prompt's cut matched to it by place);
//! - [`score`]: CLIP similarity of image files to prompts (`zoetrope score`).

pub mod adam;
pub mod augment;
pub mod cutouts;
pub mod embed;
pub mod guide;
pub mod image;
pub mod located;
pub mod loss;
pub mod mask;
pub mod palette;
pub mod phases;
pub mod replay;
pub mod score;
pub mod step;
