//! The scene's settings, one section per concern (docs/design.md §1).
//!
//! Each section is a struct with its settings as fields (serialized flat,
//! under the scene file's names), the list of setting names it reads
//! (`KEYS`) and its own reader and validation (`read`). Adding a setting
//! touches one section file: its field, its name in `KEYS` and its line in
//! `read`. The list of known settings (for "unknown setting, did you mean")
//! derives from the sections' `KEYS`.

pub mod audio;
pub mod guidance;
pub mod image;
pub mod motion;
pub mod optimizer;
pub mod output;
pub mod run;
pub mod stabilization;
pub mod text;
pub mod timing;

pub use audio::Audio;
pub use guidance::Guidance;
pub use image::Image;
pub use motion::Motion;
pub use optimizer::Optimizer;
pub use output::Output;
pub use run::Run;
pub use stabilization::Stabilization;
pub use text::Text;
pub use timing::Timing;

use crate::catalog::PYTTI_PERCEPTOR_FLAGS;

/// Every setting name a scene file may use (pytti's perceptor flags and
/// `use_mmc` included), in section order, for validation and "did you mean"
/// hints.
pub fn known_settings() -> impl Iterator<Item = &'static str> {
    let sections: [&[&'static str]; 10] = [
        text::KEYS,
        timing::KEYS,
        image::KEYS,
        guidance::KEYS,
        optimizer::KEYS,
        motion::KEYS,
        stabilization::KEYS,
        output::KEYS,
        run::KEYS,
        audio::KEYS,
    ];
    let flags = PYTTI_PERCEPTOR_FLAGS
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| !guidance::KEYS.contains(f));
    sections.into_iter().flatten().copied().chain(flags)
}

/// Whether `name` is a setting some section reads.
pub fn is_known(name: &str) -> bool {
    known_settings().any(|k| k == name)
}
