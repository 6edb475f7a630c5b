//! The frame loop: warps, stabilisation and CLIP-guided optimisation steps.

pub mod adam;
pub mod device;
pub mod step;
pub mod warp;
