//! pytti YAML presets (docs/design.md §1, docs/scene-format.md "pytti
//! presets"): a pytti-core `default.yaml`-style file, or an override whose
//! first line is `# @package _global_`, is merged over pytti-core's
//! defaults ([`pytti::DEFAULTS`]) and translated into scene settings.
//!
//! The translation produces the TOML text the scene reader reads, with a
//! [`SourceMap`] from every TOML position back to the YAML line and column,
//! so every message the reader gives (type errors, bad expressions, unknown
//! model names) points into the YAML file. Keys zoetrope does not render
//! (3D, Video Source) are refused by name when not at pytti's default; the
//! notebook display and model-cache keys get one note; Hydra interpolations
//! are understood where pytti's defaults use them (`${now:%f}` for the seed,
//! `${user_cache:}`) and as references to another setting (`${steps_per_frame}`),
//! anything else `${…}` is refused; a preset never runs code.

mod emit;
pub mod pytti;
mod translate;
pub mod yaml;

pub use emit::SourceMap;
use yaml::Pos;

/// A preset translated into scene settings.
pub struct Translated {
    /// The settings as TOML (one `name = value` line each).
    pub toml: String,
    /// TOML positions back to the YAML file's.
    pub map: SourceMap,
    /// Notes and warnings for the user (ignored keys, the display note).
    pub notes: Vec<String>,
}

/// Whether `path` names a YAML preset (`.yaml` or `.yml`).
pub fn is_preset_path(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Translates the preset `text`; `origin` names the file in messages.
pub fn translate(text: &str, origin: &str) -> crate::Result<Translated> {
    let entries = translate::settings(text, origin)?;
    let (toml, map) = emit::emit(&entries.settings, origin)?;
    Ok(Translated {
        toml,
        map,
        notes: entries.notes,
    })
}

/// `file:line:col` of a position (`file (pytti's default)` off the file).
pub fn at(origin: &str, pos: Pos) -> String {
    if pos.line == 0 {
        format!("{origin} (pytti's default)")
    } else {
        format!("{origin}:{}:{}", pos.line, pos.col)
    }
}
