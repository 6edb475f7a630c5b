//! Reading typed settings out of a scene file's TOML, with errors that
//! name the file, line and column (shared by every section).

use super::preset::SourceMap;
use super::sections;
use super::{expr, Param, WeightSpec};
use crate::catalog::{self, ModelLookup};
use crate::{Error, Result};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// The TOML text being resolved, for positions in messages.
pub(super) struct Doc<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    /// For a YAML preset, `text` is its translation into TOML and the map
    /// leads every position back to the YAML file (docs/design.md §1).
    pub(super) map: Option<&'a SourceMap>,
}

impl<'a> Doc<'a> {
    /// 1-based line and character column of a byte offset.
    /// Line 0 is a value that is not in the file (a preset's pytti default).
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        if let Some(map) = self.map {
            let p = map.pos_at(offset);
            return (p.line, p.col);
        }
        let offset = offset.min(self.text.len());
        let mut off = offset;
        while off > 0 && !self.text.is_char_boundary(off) {
            off -= 1;
        }
        let before = &self.text[..off];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    pub(super) fn at(&self, span: Range<usize>) -> String {
        self.at_col(span, 0)
    }

    /// `file:line:col`, `extra` characters right of the span's start.
    pub(super) fn at_col(&self, span: Range<usize>, extra: usize) -> String {
        match self.line_col(span.start) {
            (0, _) => format!("{} (pytti's default)", self.origin),
            (l, c) => format!("{}:{l}:{}", self.origin, c + extra),
        }
    }

    pub(super) fn err(&self, span: Range<usize>, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::input(format!("{}: setting `{key}`: {msg}", self.at(span)))
    }

    /// The file parsed as TOML.
    pub(super) fn parse(&self) -> Result<Spanned<DeTable<'a>>> {
        DeTable::parse(self.text).map_err(|e| {
            let at = match e.span() {
                Some(s) => self.at(s),
                None => self.origin.to_string(),
            };
            Error::input(format!(
                "{at}: not valid TOML: {}; settings are written `name = value`, strings in \
                 double quotes",
                e.message().trim()
            ))
        })
    }

    /// The top-level settings of `table` by name, each with its key's span;
    /// tables and unknown names are errors.
    pub(super) fn settings<'t>(&self, table: &'t DeTable<'a>) -> Result<Settings<'t>> {
        let mut vals: Settings<'t> = HashMap::new();
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            if let DeValue::Table(_) = v.get_ref() {
                return Err(Error::input(format!(
                    "{}: `[{name}]`: scene files use top-level settings only, no tables; \
                     write `setting = value` lines",
                    self.at(k.span())
                )));
            }
            if !sections::is_known(name) {
                return Err(Error::input(format!(
                    "{}: unknown setting `{name}`{}",
                    self.at(k.span()),
                    suggest(name, sections::known_settings())
                )));
            }
            vals.insert(name.to_string(), (k.span(), v));
        }
        Ok(vals)
    }
}

/// `; did you mean `x`?` for the closest candidate (see
/// [`catalog::closest`]), or where to find the list of settings.
pub(super) fn suggest<'s>(name: &str, candidates: impl IntoIterator<Item = &'s str>) -> String {
    match catalog::closest(name, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => "; see docs/scene-format.md for the list of settings".to_string(),
    }
}

/// The settings of a scene file: name → (key span, value).
pub(super) type Settings<'a> = HashMap<String, (Range<usize>, &'a Value<'a>)>;

/// Reads typed settings out of the parsed file, with positioned errors.
/// Each section of [`super::sections`] reads its own settings through it.
pub(super) struct Reader<'a> {
    pub(super) doc: &'a Doc<'a>,
    pub(super) vals: Settings<'a>,
    pub(super) lookup: &'a dyn ModelLookup,
}

impl Reader<'_> {
    pub(super) fn get(&self, key: &str) -> Option<(Range<usize>, &DeValue<'_>)> {
        self.vals.get(key).map(|(_, v)| (v.span(), v.get_ref()))
    }

    /// The value's span, or the file start for a setting left at its default.
    pub(super) fn span_of(&self, key: &str) -> Range<usize> {
        self.vals.get(key).map(|(_, v)| v.span()).unwrap_or(0..0)
    }

    pub(super) fn type_err(
        &self,
        key: &str,
        span: Range<usize>,
        v: &DeValue,
        expected: &str,
    ) -> Error {
        self.doc.err(
            span,
            key,
            format!("expected {expected}, found {}", v.type_str()),
        )
    }

    pub(super) fn number(&self, key: &str, span: &Range<usize>, v: &DeValue) -> Result<f64> {
        let parsed = match v {
            DeValue::Integer(i) => {
                let s = i.as_str().replace('_', "");
                i64::from_str_radix(&s, i.radix()).ok().map(|x| x as f64)
            }
            DeValue::Float(f) => {
                let s = f.as_str().replace('_', "");
                s.parse::<f64>().ok()
            }
            _ => return Err(self.type_err(key, span.clone(), v, "a number")),
        };
        parsed.ok_or_else(|| {
            self.doc
                .err(span.clone(), key, "this number is out of range")
        })
    }

    pub(super) fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some((span, v)) => {
                let x = self.number(key, &span, v)?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(x)
            }
        }
    }

    /// A whole number in `[min, max]`.
    pub(super) fn int_or(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        let Some((span, v)) = self.get(key) else {
            return Ok(default);
        };
        let x = self.number(key, &span, v)?;
        if x.fract() != 0.0 || !x.is_finite() {
            return Err(self
                .doc
                .err(span, key, format!("expected a whole number, found {x}")));
        }
        if x < min as f64 || x > max as f64 {
            return Err(self.doc.err(
                span,
                key,
                format!("{x} is out of range: expected a whole number from {min} to {max}"),
            ));
        }
        Ok(x as u64)
    }

    pub(super) fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some((_, DeValue::Boolean(b))) => Ok(*b),
            Some((span, v)) => Err(self.type_err(key, span, v, "true or false")),
        }
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<(Range<usize>, String)>> {
        match self.get(key) {
            None => Ok(None),
            Some((span, DeValue::String(s))) => Ok(Some((span, s.to_string()))),
            Some((span, v)) => Err(self.type_err(key, span, v, "a string in double quotes")),
        }
    }

    pub(super) fn string_or(&self, key: &str, default: &str) -> Result<String> {
        Ok(self
            .string(key)?
            .map(|(_, s)| s)
            .unwrap_or_else(|| default.to_string()))
    }

    /// One of `options` (case-insensitive).
    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        default: T,
        options: &[(&str, T)],
    ) -> Result<T> {
        let Some((span, s)) = self.string(key)? else {
            return Ok(default);
        };
        let wanted = s.trim().to_lowercase();
        if let Some((_, v)) = options.iter().find(|(n, _)| n.to_lowercase() == wanted) {
            return Ok(*v);
        }
        let list: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        Err(self.doc.err(
            span,
            key,
            format!(
                "\"{s}\" is not one of {}{}",
                list.join(", "),
                suggest(&s, options.iter().map(|(n, _)| *n))
            ),
        ))
    }

    /// Column in the file of character `col` (1-based) inside a string value.
    pub(super) fn inner_col(&self, span: &Range<usize>) -> usize {
        if let Some(map) = self.doc.map {
            return map.pos_at(span.start).quote;
        }
        let raw = &self.doc.text[span.clone()];
        if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            1
        } else {
            0
        }
    }

    pub(super) fn expr_err(
        &self,
        key: &str,
        span: &Range<usize>,
        text: &str,
        e: expr::ExprError,
    ) -> Error {
        let at = self
            .doc
            .at_col(span.clone(), self.inner_col(span) + e.column - 1);
        Error::input(format!(
            "{at}: setting `{key}`: `{text}` does not parse at column {}: {}\n    \
             {text}\n    {}^",
            e.column,
            e.message,
            " ".repeat(e.column.saturating_sub(1))
        ))
    }

    /// A number, an expression string or a keyframe string.
    pub(super) fn param_or(&self, key: &str, default: f64) -> Result<Param> {
        match self.get(key) {
            None => Ok(Param::constant(default)),
            Some((span, DeValue::String(s))) => {
                Param::parse(s).map_err(|e| self.expr_err(key, &span, s, e))
            }
            Some((span, v)) => {
                let x = self.number(key, &span, v).map_err(|_| {
                    self.type_err(
                        key,
                        span.clone(),
                        v,
                        "a number, an expression string (\"sin(t)\") or keyframes (\"0:(0), 24:(1)\")",
                    )
                })?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(Param::constant(x))
            }
        }
    }

    pub(super) fn weight(&self, key: &str) -> Result<Option<WeightSpec>> {
        match self.get(key) {
            None => Ok(None),
            Some((span, DeValue::String(s))) => WeightSpec::parse(s)
                .map(Some)
                .map_err(|e| self.expr_err(key, &span, s, e)),
            Some((span, v)) => {
                let x = self.number(key, &span, v).map_err(|_| {
                    self.type_err(
                        key,
                        span.clone(),
                        v,
                        "a weight: a number or \"weight:stop\"",
                    )
                })?;
                if !x.is_finite() {
                    return Err(self.doc.err(span, key, "expected a finite number"));
                }
                Ok(Some(WeightSpec::constant(x)))
            }
        }
    }

    /// Whether the file sets `key`.
    pub(super) fn has(&self, key: &str) -> bool {
        self.vals.contains_key(key)
    }

    /// The folder relative paths are resolved against: the scene file's,
    /// made absolute so that the resolved settings a run records stay valid
    /// wherever they are read back from (`render --resume`).
    pub(super) fn base_dir(&self) -> PathBuf {
        Path::new(self.doc.origin)
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    p.to_path_buf()
                } else {
                    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
                }
            })
            .unwrap_or_default()
    }

    /// A path from the file, resolved against [`Reader::base_dir`].
    pub(super) fn resolve_path(&self, p: &Path) -> PathBuf {
        let base_dir = self.base_dir();
        let joined = if p.is_absolute() || base_dir.as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        std::path::absolute(&joined).unwrap_or(joined)
    }
}
