//! Audio reactivity (docs/design.md §12): the soundtrack and its band-pass
//! filters, whose per-frame values are expression variables.
//!
//! Reading this section decodes the track and computes every frame's band
//! values ([`AudioReactivity::load`]), so an unreadable file, an offset past
//! the end or a bad filter is reported before anything else of the scene is
//! used (`plan` and `render` load no model before the scene). The scene
//! loader reads it first: the other sections' expressions are parsed knowing
//! the filters' variable names ([`expr::with_audio_vars`]).
//!
//! Decisions where pytti is loose:
//! - `input_audio = ""` (pytti's default) means no audio, as in pytti.
//! - `input_audio_filters` without `input_audio` is an error (the variables
//!   would have no values); `input_audio` without filters only adds the
//!   soundtrack to the MP4.
//! - A `variable_name` must be an identifier expressions can read, distinct
//!   from the built-in names (`t`, `f`, `pi`, `e`, the functions) and from
//!   the other filters' names.

use super::super::expr::{self, AudioVars};
use super::super::reader::{suggest, Reader};
use crate::audio::{AudioReactivity, FilterSpec};
use crate::Result;
use serde::Serialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::de::DeValue;

/// The settings this section reads.
pub const KEYS: &[&str] = &["input_audio", "input_audio_offset", "input_audio_filters"];

/// The keys of one `input_audio_filters` entry (pytti's names).
const FILTER_KEYS: &[&str] = &["variable_name", "f_center", "f_width", "order"];

/// The soundtrack and its filters.
#[derive(Debug, Clone, Serialize)]
pub struct Audio {
    /// The audio file (absolute), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<PathBuf>,
    /// Seconds into the track where frame 1 starts.
    pub input_audio_offset: f64,
    /// One band-pass filter per expression variable.
    pub input_audio_filters: Vec<FilterSpec>,
    /// The decoded track and every frame's band values (with `input_audio`).
    #[serde(skip)]
    pub track: Option<AudioVars>,
}

impl Audio {
    /// Reads the settings, checks the filters and decodes the track; errors
    /// name the setting (and the file, line and column where there is one).
    pub(in crate::scene) fn read(r: &Reader) -> Result<Audio> {
        let input_audio = match r.string("input_audio")? {
            Some((_, s)) if s.trim().is_empty() => None,
            Some((_, s)) => Some(r.resolve_path(Path::new(s.trim()))),
            None => None,
        };
        let input_audio_offset = r.f64_or("input_audio_offset", 0.0)?;
        if input_audio_offset < 0.0 {
            return Err(r.doc.err(
                r.span_of("input_audio_offset"),
                "input_audio_offset",
                format!("{input_audio_offset} is negative; use seconds from 0 up"),
            ));
        }
        let input_audio_filters = filters(r)?;
        let track = match &input_audio {
            None => {
                if let Some((span, _)) = r.get("input_audio_filters") {
                    if !input_audio_filters.is_empty() {
                        return Err(r.doc.err(
                            span,
                            "input_audio_filters",
                            "the filters need a track to listen to; add input_audio = \
                             \"path/to/music.mp3\" or remove the filters",
                        ));
                    }
                }
                None
            }
            Some(path) => {
                let fps = r.f64_or("frames_per_second", 12.0)?;
                let loaded =
                    AudioReactivity::load(path, input_audio_offset, fps, &input_audio_filters)
                        .map_err(|e| e.context(r.doc.at(r.span_of("input_audio"))))?;
                Some(AudioVars(Arc::new(loaded)))
            }
        };
        Ok(Audio {
            input_audio,
            input_audio_offset,
            input_audio_filters,
            track,
        })
    }

    /// Whether the scene has a soundtrack.
    pub fn has_track(&self) -> bool {
        self.track.is_some()
    }

    /// The decoded track and its band values, when there is one.
    pub fn reactivity(&self) -> Option<&AudioReactivity> {
        self.track.as_ref().map(|t| &*t.0)
    }
}

/// `input_audio_filters`: an array of `{variable_name, f_center, f_width,
/// order}` tables (inline, or `[[input_audio_filters]]` sections).
fn filters(r: &Reader) -> Result<Vec<FilterSpec>> {
    const KEY: &str = "input_audio_filters";
    let Some((span, v)) = r.get(KEY) else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = v else {
        return Err(r.type_err(
            KEY,
            span,
            v,
            "an array of tables, e.g. [{variable_name = \"bass\", f_center = 80, f_width = 60, \
             order = 6}]",
        ));
    };
    let mut out: Vec<FilterSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let spec = filter(r, i + 1, item.span(), item.get_ref())?;
        if out.iter().any(|f| f.variable_name == spec.variable_name) {
            return Err(r.doc.err(
                item.span(),
                KEY,
                format!(
                    "two filters are named `{}`; give each filter its own variable_name",
                    spec.variable_name
                ),
            ));
        }
        spec.validate()
            .map_err(|e| e.context(r.doc.at(item.span())))?;
        out.push(spec);
    }
    Ok(out)
}

/// Entry `n` (1-based) of `input_audio_filters`.
fn filter(r: &Reader, n: usize, span: Range<usize>, v: &DeValue) -> Result<FilterSpec> {
    const KEY: &str = "input_audio_filters";
    let DeValue::Table(table) = v else {
        return Err(r.type_err(
            KEY,
            span,
            v,
            "a table {variable_name = \"bass\", f_center = 80, f_width = 60, order = 6}",
        ));
    };
    let at = |what: &str| format!("filter {n}: {what}");
    for (k, _) in table.iter() {
        let name: &str = k.get_ref();
        if !FILTER_KEYS.contains(&name) {
            return Err(r.doc.err(
                k.span(),
                KEY,
                at(&format!(
                    "unknown key `{name}`{} (a filter has variable_name, f_center, f_width and \
                     order)",
                    suggest(name, FILTER_KEYS.iter().copied())
                )),
            ));
        }
    }
    let get = |key: &str| {
        table
            .get(key)
            .map(|x| (x.span(), x.get_ref()))
            .ok_or_else(|| {
                r.doc
                    .err(span.clone(), KEY, at(&format!("`{key}` is missing")))
            })
    };
    let (name_span, name) = get("variable_name")?;
    let DeValue::String(name) = name else {
        return Err(r.type_err(KEY, name_span, name, "variable_name as a string"));
    };
    check_name(r, n, name_span, name)?;
    let number = |key: &str| -> Result<f64> {
        let (s, x) = get(key)?;
        let x = r
            .number(KEY, &s, x)
            .map_err(|e| e.context(at(&format!("`{key}`"))))?;
        if !x.is_finite() {
            return Err(r
                .doc
                .err(s, KEY, at(&format!("`{key}` must be a finite number"))));
        }
        Ok(x)
    };
    let f_center = number("f_center")?;
    let f_width = number("f_width")?;
    let order = number("order")?;
    if order.fract() != 0.0 || !(1.0..=f64::from(crate::audio::MAX_ORDER)).contains(&order) {
        let (s, _) = get("order")?;
        return Err(r.doc.err(
            s,
            KEY,
            at(&format!(
                "order = {order}; use a whole number from 1 to {} (pytti's default is 6)",
                crate::audio::MAX_ORDER
            )),
        ));
    }
    Ok(FilterSpec {
        variable_name: name.to_string(),
        f_center,
        f_width,
        order: order as u32,
    })
}

/// A filter's `variable_name` must be readable in expressions and not hide
/// a built-in name.
fn check_name(r: &Reader, n: usize, span: Range<usize>, name: &str) -> Result<()> {
    const KEY: &str = "input_audio_filters";
    if !expr::is_identifier(name) {
        return Err(r.doc.err(
            span,
            KEY,
            format!(
                "filter {n}: variable_name \"{name}\" is not a name expressions can use; use \
                 letters, digits and _ (starting with a letter), e.g. \"bass\""
            ),
        ));
    }
    if expr::is_builtin_name(name) {
        return Err(r.doc.err(
            span,
            KEY,
            format!(
                "filter {n}: variable_name \"{name}\" clashes with the built-in `{name}` of \
                 expressions (t, f, pi, e and the functions); choose another name, e.g. \
                 \"{name}_band\""
            ),
        ));
    }
    Ok(())
}
