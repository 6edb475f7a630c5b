//! The frame loop: warps, stabilisation and CLIP-guided optimisation steps.

pub mod device;
pub mod frameloop;
pub mod loop_close;
pub mod memory;
pub mod preflight;
pub mod progress;
pub mod state_warp;
pub mod warp;
