//! What `plan` and `render` refuse about a scene before any model loads:
//! every weight, stop and motion value where the render evaluates it
//! ([`Timeline::check_values`]) and every text prompt against CLIP's
//! context of 77 tokens.
//!
//! A prompt that does not fit is an error, not a silent cut: the official
//! `clip.tokenize` raises one by default and pytti calls it that way, so a
//! pytti user's over-long prompt failed there too (zoetrope only says so
//! before anything loads). Every OpenAI CLIP model has a 77-token context.

use crate::models::clip::Tokenizer;
use crate::scene::{PromptSource, Scene};
use crate::schedule::Timeline;
use crate::Result;

/// The text context of every OpenAI CLIP model.
pub const CLIP_CONTEXT: usize = 77;

/// Checks everything about `scene` (compiled into `timeline`) that would make
/// a render fail on the way; errors name the file, the setting or prompt and
/// where it goes wrong.
pub fn check(scene: &Scene, timeline: &Timeline) -> Result<()> {
    timeline.check_values(scene)?;
    let tokenizer = Tokenizer::shared();
    for (j, prompts) in scene.prompts.iter().enumerate() {
        for p in prompts {
            if let PromptSource::Text(text) = &p.source {
                tokenizer
                    .check_fits(text, CLIP_CONTEXT)
                    .map_err(|e| e.context(format!("{}: scene {}", scene.origin, j + 1)))?;
            }
        }
    }
    Ok(())
}
