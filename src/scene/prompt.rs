//! The prompt grammar (docs/design.md §2).
//!
//! `scenes` holds scenes separated by `||`; each scene gets `scene_prefix`
//! and `scene_suffix` around it and is split on `|` into prompts. A prompt
//! is `text:weight:stop`, where weight (default 1) and stop (default −∞) are
//! expressions in `t` and `f` ([`Param`]). `[path]` as the text is an image
//! prompt; colons and pipes inside brackets belong to the path. `\:` is a
//! literal colon and `\|` a literal pipe.
//!
//! Decisions where docs/design.md is silent:
//! - A scene that holds no prompt of its own (only whitespace and `|`) is
//!   dropped with a warning — usually a stray trailing `||` — rather than
//!   becoming a scene of only prefix/suffix prompts.
//! - An empty weight or stop field (`text::-.9`) means the default.
//! - Weights and stops are expressions, not keyframe strings: keyframes
//!   contain colons, which already separate the fields. Write keyframe-like
//!   weights as expressions (`max(0, 1 - t/10)`).

use super::expr::{ExprError, Param};
use crate::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// What a prompt asks for: a text, or an image file (path as written; the
/// scene loader resolves it against the scene file's folder).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptSource {
    Text(String),
    Image(PathBuf),
}

impl fmt::Display for PromptSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptSource::Text(t) => f.write_str(t),
            PromptSource::Image(p) => write!(f, "[{}]", p.display()),
        }
    }
}

/// Where a prompt acts: pytti's prompt masks (`text:weight_mask_threshold:stop`,
/// docs/design.md §2a). The geometric masks compare each crop's centre or
/// size, in fractions of the image, with the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptMask {
    /// `a`, the default: every crop.
    All,
    /// `l`: crops whose centre is left of the threshold (x < threshold).
    Left,
    /// `r`: crops whose centre is right of the threshold.
    Right,
    /// `u`: crops whose centre is above the threshold (y < threshold, y down).
    Up,
    /// `d`: crops whose centre is below the threshold.
    Down,
    /// `n`: large crops (shorter side, as a fraction, at or above the threshold).
    Near,
    /// `f`: small crops (at or below the threshold).
    Far,
    /// `[path]` or `[-path]`: an image mask (white acts), inverted with `-`.
    Image { path: PathBuf, inverted: bool },
    /// Any other text: the crops CLIP finds close to this text.
    Semantic(String),
}

impl PromptMask {
    /// pytti's default threshold (`0.5000873264`, its "no threshold given"
    /// marker, which the geometric masks use as the number it is).
    pub const DEFAULT_THRESHOLD: f64 = 0.5000873264;

    /// The mask as the prompt grammar writes it.
    pub fn code(&self) -> String {
        match self {
            PromptMask::All => "a".into(),
            PromptMask::Left => "l".into(),
            PromptMask::Right => "r".into(),
            PromptMask::Up => "u".into(),
            PromptMask::Down => "d".into(),
            PromptMask::Near => "n".into(),
            PromptMask::Far => "f".into(),
            PromptMask::Image { path, inverted } => {
                format!("[{}{}]", if *inverted { "-" } else { "" }, path.display())
            }
            PromptMask::Semantic(t) => t.clone(),
        }
    }

    /// Reads a mask field (trimmed, non-empty): a letter, `[image]` or a text.
    fn parse(s: &str) -> std::result::Result<PromptMask, String> {
        Ok(match s {
            "a" => PromptMask::All,
            "l" => PromptMask::Left,
            "r" => PromptMask::Right,
            "u" => PromptMask::Up,
            "d" => PromptMask::Down,
            "n" => PromptMask::Near,
            "f" => PromptMask::Far,
            _ if s.starts_with('[') && s.ends_with(']') && s.len() >= 2 => {
                let inner = s[1..s.len() - 1].trim();
                let (inverted, path) = match inner.strip_prefix('-') {
                    Some(p) => (true, p.trim()),
                    None => (false, inner),
                };
                if path.is_empty() {
                    return Err(
                        "the image mask names no file; write [mask.png] or [-mask.png]".into(),
                    );
                }
                if path.to_ascii_lowercase().ends_with(".mp4") {
                    return Err("video masks (pytti's rotoscoped .mp4) are not supported; use an image mask [mask.png]".into());
                }
                PromptMask::Image {
                    path: PathBuf::from(path),
                    inverted,
                }
            }
            _ => PromptMask::Semantic(unescape(s)),
        })
    }
}

/// One prompt with its weight and stop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompt {
    pub source: PromptSource,
    /// Multiplies the prompt's loss; negative pushes away. Default 1.
    pub weight: Param,
    /// Distance threshold (docs/design.md §2); `None` is −∞ (never stops).
    pub stop: Option<Param>,
    /// Which crops the prompt acts on (`weight_mask`); default all.
    pub mask: PromptMask,
    /// The mask's threshold (`weight_mask_threshold`), an expression in `t`
    /// and `f`; `None` is pytti's default ([`PromptMask::DEFAULT_THRESHOLD`]).
    pub mask_threshold: Option<Param>,
    /// The prompt as written (trimmed), for messages and metadata.
    pub raw: String,
}

impl Prompt {
    /// The stop at `(t, f)`, −∞ when none was given.
    #[inline]
    pub fn stop_at(&self, t: f64, f: f64) -> f64 {
        match &self.stop {
            Some(p) => p.eval(t, f),
            None => f64::NEG_INFINITY,
        }
    }

    /// The mask threshold at `(t, f)` (pytti's default when none was given).
    #[inline]
    pub fn mask_threshold_at(&self, t: f64, f: f64) -> f64 {
        match &self.mask_threshold {
            Some(p) => p.eval(t, f),
            None => PromptMask::DEFAULT_THRESHOLD,
        }
    }

    /// Parses one prompt (`text:weight_mask_threshold:stop`). The error
    /// message quotes the prompt and marks the field.
    pub fn parse(raw: &str) -> std::result::Result<Prompt, String> {
        let raw = raw.trim();
        let mut fields = split_fields(raw);
        if fields.len() > 3 {
            let (col, _) = fields[3];
            return Err(mark(
                raw,
                col.saturating_sub(1),
                "too many `:` (a prompt is text:weight:stop); write `\\:` for a literal colon",
            ));
        }
        let source = parse_source(raw, &fields[0].1)?;
        let (mask, mask_threshold) = match fields.get_mut(1) {
            Some(weight_field) => split_mask(raw, weight_field)?,
            None => (PromptMask::All, None),
        };
        let weight =
            param_field(raw, fields.get(1), "weight")?.unwrap_or_else(|| Param::constant(1.0));
        let stop = param_field(raw, fields.get(2), "stop")?;
        Ok(Prompt {
            source,
            weight,
            stop,
            mask,
            mask_threshold,
            raw: raw.to_string(),
        })
    }
}

/// The text field: a text, or `[path]` for an image prompt.
fn parse_source(raw: &str, text_raw: &str) -> std::result::Result<PromptSource, String> {
    let text = unescape(text_raw.trim());
    if text.is_empty() {
        return Err(mark(
            raw,
            1,
            "the prompt has no text; write text:weight:stop or [image path]:weight",
        ));
    }
    let trimmed = text_raw.trim();
    Ok(
        if trimmed.starts_with('[') && trimmed.ends_with(']') && trimmed.len() >= 2 {
            let path = trimmed[1..trimmed.len() - 1].trim();
            if path.is_empty() {
                return Err(mark(raw, 1, "the image prompt `[]` names no file"));
            }
            PromptSource::Image(PathBuf::from(path))
        } else {
            PromptSource::Text(text)
        },
    )
}

/// An expression field `(column, text)` of `raw`: `None` when absent or
/// blank, a caret error at the offending character when it does not parse.
fn param_field(
    raw: &str,
    field: Option<&(usize, String)>,
    name: &str,
) -> std::result::Result<Option<Param>, String> {
    match field {
        Some((col, s)) => param_at("prompt", raw, *col, s, name),
        None => Ok(None),
    }
}

/// The expression field `s` of `raw` starting at 1-based column `col`:
/// `None` when blank, else a caret error ([`caret`], labelled `what`) at the
/// offending character when it does not parse.
pub(super) fn param_at(
    what: &str,
    raw: &str,
    col: usize,
    s: &str,
    name: &str,
) -> std::result::Result<Option<Param>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let lead = s.chars().take_while(|c| c.is_whitespace()).count();
    Param::parse(s.trim()).map(Some).map_err(|e: ExprError| {
        caret(
            what,
            raw,
            col + lead + e.column - 1,
            &format!("the {name} `{}` does not parse: {}", s.trim(), e.message),
        )
    })
}

/// Splits the weight field `weight_mask_threshold` (pytti splits it on `_`
/// outside brackets) into the mask and its threshold, leaving the weight part
/// (with its column) in `field`.
fn split_mask(
    raw: &str,
    field: &mut (usize, String),
) -> std::result::Result<(PromptMask, Option<Param>), String> {
    let col = field.0;
    let parts = split_underscores(&field.1);
    if parts.len() > 3 {
        return Err(mark(
            raw,
            col + parts[3].0 - 2,
            "too many `_` in the weight (it is weight_mask_threshold, e.g. 1_l_0.3)",
        ));
    }
    *field = (col + parts[0].0 - 1, parts[0].1.clone());
    let Some((mcol, m)) = parts.get(1) else {
        return Ok((PromptMask::All, None));
    };
    let lead = m.chars().take_while(|c| c.is_whitespace()).count();
    let at = col + mcol - 1 + lead;
    if m.trim().is_empty() {
        return Err(mark(
            raw,
            at,
            "the mask after `_` is empty; write a, l, r, u, d, n, f, [mask.png], [-mask.png] or a text",
        ));
    }
    let mask = PromptMask::parse(m.trim()).map_err(|e| mark(raw, at, &e))?;
    let threshold = match parts.get(2) {
        None => None,
        Some((tcol, t)) => {
            let tf = (col + tcol - 1, t.clone());
            if t.trim().is_empty() {
                return Err(mark(
                    raw,
                    tf.0,
                    "the mask threshold after `_` is empty; write a number, e.g. 1_l_0.3",
                ));
            }
            param_field(raw, Some(&tf), "mask threshold")?
        }
    };
    Ok((mask, threshold))
}

/// A weight string (`direct_init_weight` etc.): `weight` or `weight:stop`,
/// both expressions; a keyframe string is accepted as the weight alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightSpec {
    pub weight: Param,
    /// `None` is −∞.
    pub stop: Option<Param>,
}

impl WeightSpec {
    /// A constant weight with no stop.
    pub fn constant(w: f64) -> WeightSpec {
        WeightSpec {
            weight: Param::constant(w),
            stop: None,
        }
    }

    /// Parses `weight` or `weight:stop`; the error's column is in `text`.
    pub fn parse(text: &str) -> std::result::Result<WeightSpec, ExprError> {
        // A keyframe string is one weight, colons and all.
        match Param::parse(text) {
            Ok(p) => {
                return Ok(WeightSpec {
                    weight: p,
                    stop: None,
                })
            }
            Err(e) if super::expr::is_keyframe_string(text) => return Err(e),
            Err(_) => {}
        }
        let chars: Vec<char> = text.chars().collect();
        let Some(colon) = chars.iter().position(|c| *c == ':') else {
            return Param::parse(text).map(|weight| WeightSpec { weight, stop: None });
        };
        let w: String = chars[..colon].iter().collect();
        let s: String = chars[colon + 1..].iter().collect();
        let weight = Param::parse(&w)?;
        let stop = Param::parse(&s).map_err(|e| ExprError {
            column: e.column + colon + 1,
            message: e.message,
        })?;
        Ok(WeightSpec {
            weight,
            stop: Some(stop),
        })
    }

    /// The stop at `(t, f)`, −∞ when none was given.
    #[inline]
    pub fn stop_at(&self, t: f64, f: f64) -> f64 {
        match &self.stop {
            Some(p) => p.eval(t, f),
            None => f64::NEG_INFINITY,
        }
    }
}

impl fmt::Display for WeightSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stop {
            Some(s) => write!(f, "{}:{}", self.weight, s),
            None => write!(f, "{}", self.weight),
        }
    }
}

/// Splits `scenes` on `||`, wraps each with prefix/suffix and parses its
/// prompts. Errors name the scene and quote the prompt.
pub fn parse_scenes(scenes: &str, prefix: &str, suffix: &str) -> Result<Vec<Vec<Prompt>>> {
    parse_scenes_with_warnings(scenes, prefix, suffix).map(|(s, _)| s)
}

/// [`parse_scenes`], also returning warnings about dropped empty scenes.
pub fn parse_scenes_with_warnings(
    scenes: &str,
    prefix: &str,
    suffix: &str,
) -> Result<(Vec<Vec<Prompt>>, Vec<String>)> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (i, scene) in split_top(scenes, "||").into_iter().enumerate() {
        let own = split_top(scene, "|");
        if own.iter().all(|p| p.trim().is_empty()) {
            warnings.push(format!(
                "scenes: scene {} is empty and was dropped (a stray `||`?)",
                i + 1
            ));
            continue;
        }
        // Scenes are trimmed first so `a || b` needs no care with spaces.
        let text = format!("{prefix}{}{suffix}", scene.trim());
        let mut prompts = Vec::new();
        for piece in split_top(&text, "|") {
            if piece.trim().is_empty() {
                continue;
            }
            let p = Prompt::parse(piece)
                .map_err(|m| Error::input(format!("scenes: scene {}: {m}", i + 1)))?;
            prompts.push(p);
        }
        out.push(prompts);
    }
    if out.is_empty() {
        return Err(Error::input(
            "scenes: no prompts found; write at least one, e.g. scenes = \"a misty forest\"",
        ));
    }
    Ok((out, warnings))
}

/// Splits on `sep` outside `[...]` and not after a backslash.
fn split_top<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let sepb = sep.as_bytes();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'[' => depth += 1,
            b']' => depth = (depth - 1).max(0),
            _ => {}
        }
        if depth == 0 && bytes[i..].starts_with(sepb) {
            out.push(&s[start..i]);
            i += sepb.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push(&s[start.min(s.len())..]);
    out
}

/// Splits a prompt on `:` outside brackets and not escaped; each field with
/// its 1-based character column in the prompt.
fn split_fields(s: &str) -> Vec<(usize, String)> {
    split_outside_brackets(s, ':', true)
}

/// Splits a weight field on `_` outside brackets (pytti's `_(?![^\[]*\])`);
/// each part with its 1-based character column in the field.
fn split_underscores(s: &str) -> Vec<(usize, String)> {
    split_outside_brackets(s, '_', false)
}

/// Splits `s` on `sep` outside `[…]`; each piece with its 1-based character
/// column in `s`. With `escapes`, a backslash keeps the character after it
/// in the piece (so `\:` does not split).
fn split_outside_brackets(s: &str, sep: char, escapes: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_col = 1;
    let mut depth = 0i32;
    let mut chars = s.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if escapes => {
                cur.push(c);
                if let Some((_, n)) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            '[' => depth += 1,
            ']' => depth = (depth - 1).max(0),
            c if c == sep && depth == 0 => {
                out.push((cur_col, std::mem::take(&mut cur)));
                cur_col = i + 2;
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push((cur_col, cur));
    out
}

/// `\:` → `:` and `\|` → `|`; other backslashes stay.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some(':') | Some('|')) {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `prompt "…", column N: message` plus a caret under 1-based character `col`.
fn mark(prompt: &str, col: usize, msg: &str) -> String {
    caret("prompt", prompt, col, msg)
}

/// `WHAT "raw", column N: message`, then `raw` with a caret under 1-based
/// character `col`.
pub(super) fn caret(what: &str, raw: &str, col: usize, msg: &str) -> String {
    let col = col.max(1);
    format!(
        "{what} \"{raw}\", column {col}: {msg}\n    {raw}\n    {}^",
        " ".repeat(col - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_document_scenes() {
        let s = parse_scenes(
            "a photograph of a bright and beautiful spring day, by Trey Ratcliff || a painting of a cold wintery landscape, by Rembrandt ",
            "",
            " | text:-1:-.9 | watermark:-1:-.9",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), 3);
        assert_eq!(
            s[1][0].source,
            PromptSource::Text("a painting of a cold wintery landscape, by Rembrandt".into())
        );
        assert_eq!(s[0][1].source, PromptSource::Text("text".into()));
        assert_eq!(s[0][1].weight.eval(0.0, 0.0), -1.0);
        assert_eq!(s[0][1].stop_at(0.0, 0.0), -0.9);
        assert_eq!(s[0][0].stop_at(0.0, 0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn images_escapes_and_errors() {
        let p = Prompt::parse("[C:\\img:x.png]:0.5").unwrap();
        assert_eq!(p.source, PromptSource::Image("C:\\img:x.png".into()));
        assert_eq!(p.weight.eval(0.0, 0.0), 0.5);
        let p = Prompt::parse("at 10\\:30 pm:2").unwrap();
        assert_eq!(p.source, PromptSource::Text("at 10:30 pm".into()));
        let e = Prompt::parse("cat:abc:-.9").unwrap_err();
        assert!(e.contains("column 5") && e.contains("weight `abc`"), "{e}");
        let e = Prompt::parse("cat:1:1+").unwrap_err();
        assert!(e.contains("stop") && e.contains("column 9"), "{e}");
        assert!(Prompt::parse("a:1:2:3").is_err());
        assert!(Prompt::parse(":1").is_err());
    }

    #[test]
    fn weight_specs() {
        let w = WeightSpec::parse("0.3").unwrap();
        assert_eq!(w.weight.eval(0.0, 0.0), 0.3);
        assert!(w.stop.is_none());
        let w = WeightSpec::parse("1:-.5").unwrap();
        assert_eq!(w.stop_at(0.0, 0.0), -0.5);
        let w = WeightSpec::parse("0:(1), 10:(0)").unwrap();
        assert_eq!(w.weight.eval(0.0, 5.0), 0.5);
        let e = WeightSpec::parse("1:foo").unwrap_err();
        assert_eq!(e.column, 3);
    }
}
