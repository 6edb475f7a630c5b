//! The prompts: `scenes` and the text added around every prompt.

use super::super::prompt::{self, Prompt, PromptMask, PromptSource};
use super::super::reader::Reader;
use crate::{Error, Result};
use serde::Serialize;

/// The settings this section reads.
pub const KEYS: &[&str] = &["scenes", "scene_prefix", "scene_suffix"];

/// The prompt text as written.
#[derive(Debug, Clone, Serialize)]
pub struct Text {
    pub scenes: String,
    pub scene_prefix: String,
    pub scene_suffix: String,
}

impl Text {
    /// Reads the prompt settings and parses the prompts: one list per
    /// scene, image paths resolved against the scene file's folder.
    pub(in crate::scene) fn read(
        r: &Reader,
        warnings: &mut Vec<String>,
    ) -> Result<(Text, Vec<Vec<Prompt>>)> {
        let Some((scenes_span, scenes)) = r.string("scenes")? else {
            return Err(Error::input(format!(
                "{}: the setting `scenes` is missing; add e.g. scenes = \"a misty forest \
                 || a city at night\" (scenes separated by ||, prompts by |)",
                r.doc.origin
            )));
        };
        let scene_prefix = r.string_or("scene_prefix", "")?;
        let scene_suffix = r.string_or("scene_suffix", "")?;
        let (mut prompts, w) =
            prompt::parse_scenes_with_warnings(&scenes, &scene_prefix, &scene_suffix)
                .map_err(|e| e.context(r.doc.at(scenes_span)))?;
        warnings.extend(w);
        for scene in &mut prompts {
            for p in scene {
                if let PromptSource::Image(path) = &p.source {
                    p.source = PromptSource::Image(r.resolve_path(path));
                }
                if let PromptMask::Image { path, .. } = &mut p.mask {
                    *path = r.resolve_path(path);
                }
            }
        }
        let text = Text {
            scenes,
            scene_prefix,
            scene_suffix,
        };
        Ok((text, prompts))
    }
}
