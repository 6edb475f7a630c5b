//! The frame loop: warps, stabilisation and CLIP-guided optimisation steps.

pub mod warp;
