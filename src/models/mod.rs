//! Models: the CLIP perceptors, the VQGAN image models and the weights that feed them.
//!
//! Each model family keeps its `VarStore` paths equal to the official state-dict
//! keys, so an official checkpoint converted to safetensors loads without renaming,
//! and each infers its architecture from the tensor shapes alone.

pub mod attention;
pub mod clip;
pub mod lean;
pub mod lookup;
pub mod tiny;
pub mod vqgan;
pub mod weights;

pub use lookup::WeightsLookup;
