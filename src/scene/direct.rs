//! `direct_image_prompts` (pytti's direct image prompts, docs/design.md §6a):
//! images the render is pulled toward pixel by pixel (and, for a VQGAN, latent
//! by latent), as `direct_init_weight` pulls toward the init image.
//!
//! The setting is `path:weight_mask:stop | path:weight | …` (pytti's
//! `TargetImage` grammar): `weight` (default 1) and `stop` (default −∞) are
//! expressions in `t` and `f`; the optional `mask` after `_` is a mask image
//! path, `-path` inverted. A colon followed by `/` or `\` belongs to the path
//! (`C:/refs/a.png`), as in pytti.

use super::expr::Param;
use super::prompt::{caret, param_at};
use serde::Serialize;
use std::path::PathBuf;

/// One direct image prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectImagePrompt {
    /// The image, resolved against the scene file's folder when the scene loads.
    pub path: PathBuf,
    /// Default 1.
    pub weight: Param,
    /// `None` is −∞.
    pub stop: Option<Param>,
    /// A mask image and whether it is inverted (`-path`).
    pub mask: Option<(PathBuf, bool)>,
    /// The entry as written (trimmed), for messages.
    pub raw: String,
}

impl DirectImagePrompt {
    /// The stop at `(t, f)`, −∞ when none was given.
    pub fn stop_at(&self, t: f64, f: f64) -> f64 {
        self.stop
            .as_ref()
            .map_or(f64::NEG_INFINITY, |p| p.eval(t, f))
    }
}

/// Parses the setting: entries separated by `|`, empty ones dropped. The
/// error quotes the entry and marks the column of the offending field.
pub fn parse_direct_image_prompts(
    text: &str,
) -> std::result::Result<Vec<DirectImagePrompt>, String> {
    text.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_one)
        .collect()
}

/// One `path:weight_mask:stop`.
fn parse_one(raw: &str) -> std::result::Result<DirectImagePrompt, String> {
    let fields = split_colons(raw);
    if fields.len() > 3 {
        return Err(mark(
            raw,
            fields[3].0 - 1,
            "too many `:` (an entry is path:weight_mask:stop)",
        ));
    }
    let path = fields[0].1.trim();
    if path.is_empty() {
        return Err(mark(raw, 1, "the entry names no image; write path:weight"));
    }
    let (mut weight, mut mask) = (None, None);
    if let Some((col, w)) = fields.get(1) {
        // pytti splits the weight once on `_`: the rest is the mask's path.
        let (w_text, m_text) = match w.split_once('_') {
            Some((a, b)) => (a, Some((col + a.chars().count() + 1, b))),
            None => (w.as_str(), None),
        };
        weight = expr(raw, *col, w_text, "weight")?;
        if let Some((mcol, m)) = m_text {
            let m = m.trim();
            let (inverted, p) = match m.strip_prefix('-') {
                Some(p) => (true, p.trim()),
                None => (false, m),
            };
            if p.is_empty() {
                return Err(mark(raw, mcol, "the mask after `_` names no image"));
            }
            if p.to_ascii_lowercase().ends_with(".mp4") {
                return Err(mark(
                    raw,
                    mcol,
                    "video masks (pytti's rotoscoped .mp4) are not supported; use a mask image",
                ));
            }
            mask = Some((PathBuf::from(p), inverted));
        }
    }
    let stop = match fields.get(2) {
        Some((col, s)) => expr(raw, *col, s, "stop")?,
        None => None,
    };
    Ok(DirectImagePrompt {
        path: PathBuf::from(path),
        weight: weight.unwrap_or_else(|| Param::constant(1.0)),
        stop,
        mask,
        raw: raw.to_string(),
    })
}

/// An expression field starting at 1-based column `col`; blank is `None`.
fn expr(raw: &str, col: usize, s: &str, name: &str) -> std::result::Result<Option<Param>, String> {
    param_at("direct_image_prompts", raw, col, s, name)
}

/// Splits on `:` except before `/` or `\` (a drive or URL colon); each field
/// with its 1-based character column.
fn split_colons(s: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut col = 1;
    for (i, &c) in chars.iter().enumerate() {
        if c == ':' && !matches!(chars.get(i + 1), Some('/') | Some('\\')) {
            out.push((col, std::mem::take(&mut cur)));
            col = i + 2;
        } else {
            cur.push(c);
        }
    }
    out.push((col, cur));
    out
}

/// `direct_image_prompts "…", column N: message` and a caret.
fn mark(raw: &str, col: usize, msg: &str) -> String {
    caret("direct_image_prompts", raw, col, msg)
}
