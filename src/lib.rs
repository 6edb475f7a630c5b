//! zoetrope renders keyframed, prompt-interpolating animations with
//! CLIP-guided VQGAN and writes them as MP4.
//!
//! The modules follow the data's path through a render:
//!
//! - [`catalog`]: the model names, spellings and "did you mean" (no libtorch);
//! - [`scene`]: the TOML scene file, its settings, prompt grammar and expressions;
//! - [`schedule`]: the scene compiler, turning scenes into a per-step timeline;
//! - [`models`]: the CLIP perceptors, the VQGAN image models and their weights;
//! - [`guidance`]: cutouts and the losses that steer the image;
//! - [`render`]: the frame loop (warps, stabilisation, optimisation steps);
//! - [`bench`]: `zoetrope bench`, the step's speed at real sizes with random weights;
//! - [`tuning`]: the speed and memory switches (`--tune`), one table;
//! - [`audio`]: audio reactivity: decoding, band-pass filters, per-frame band values;
//! - [`output`]: run folders, PNG frames and the MP4;
//! - `media`: FFmpeg initialisation and file-name helpers shared by `audio` and `output`;
//! - [`grid`]: the VQGAN × perceptor comparison batch and its outputs;
//! - `preview`: `plan --preview`, the camera path warped without a model.
//!
//! The `zoetrope` binary is a thin command line over these.

pub mod atomic;
pub mod audio;
pub mod bench;
pub mod catalog;
pub mod error;
pub mod gpu;
pub mod grid;
pub mod guidance;
#[cfg(feature = "video")]
pub mod media;
pub mod models;
pub mod ops;
pub mod output;
#[cfg(feature = "video")]
pub mod preview;
pub mod render;
pub mod rng;
pub mod scene;
pub mod schedule;
pub mod tuning;

pub use error::{Error, ErrorKind, Result};
