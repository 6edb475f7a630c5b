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

use crate::tuning::Tuning;
pub use lookup::WeightsLookup;

/// How the models compute, fixed when they are built: the model-level
/// speed and memory switches of [`Tuning`] (`lean-activations`,
/// `deterministic`), given to the constructors and loaders
/// ([`clip::Clip::load_with`], [`vqgan::Vqgan::load_with`], ...) instead of
/// being set for the whole process. The plain constructors take
/// [`ModelOptions::default`], the render's default switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// The VQGAN's frozen convolutions keep only what the latent's gradient
    /// needs where the C++ shim is built ([`lean`]).
    pub lean_activations: bool,
    /// Every attention takes the explicit, deterministic form
    /// ([`attention`]).
    pub deterministic_attention: bool,
}

impl ModelOptions {
    /// The model-level switches of `tuning`.
    pub fn of_tuning(tuning: &Tuning) -> ModelOptions {
        ModelOptions {
            lean_activations: tuning.lean_activations,
            deterministic_attention: tuning.deterministic,
        }
    }
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions::of_tuning(&Tuning::default())
    }
}
