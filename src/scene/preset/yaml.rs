//! A YAML file read into a small tree whose every node keeps its line and
//! column, with scalars typed as pytti reads them: PyYAML's YAML 1.1 rules
//! (`yes`/`no`/`on`/`off` are booleans, `0o`-less octal `012`, `1:30`
//! sexagesimal) with OmegaConf's float rule (`1e-3` is a float).
//!
//! The syntax is parsed by `saphyr-parser` (a YAML 1.2 event parser that
//! reports the position of every event and of every syntax error); the
//! typing of plain scalars is done here because pytti's loader is YAML 1.1.

use crate::{Error, Result};
use regex::Regex;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span, Tag};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Where a node starts in the file: 1-based line and column, and how many
/// characters of quoting precede its text (1 for `'x'` and `"x"`, else 0).
/// Line 0 marks a value that is not in the file (pytti's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub quote: usize,
}

impl Pos {
    fn of(m: &Marker, quote: usize) -> Pos {
        Pos {
            line: m.line(),
            col: m.col() + 1,
            quote,
        }
    }

    /// A value that comes from pytti's defaults, not from the file.
    pub const DEFAULT: Pos = Pos {
        line: 0,
        col: 0,
        quote: 0,
    };
}

/// A typed YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order: key text, key position, value.
    Map(Vec<(String, Pos, Node)>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    /// What the value is, in words, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Parses `text` (one YAML document) into its tree; `origin` names the
/// file in messages. An empty document is an empty mapping.
pub fn parse(text: &str, origin: &str) -> Result<Node> {
    let mut p = Events {
        parser: Parser::new_from_str(text),
        origin,
        anchors: HashMap::new(),
    };
    loop {
        let (ev, span) = p.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart(_) => continue,
            Event::StreamEnd | Event::DocumentEnd => {
                return Ok(Node {
                    pos: Pos::of(&span.start, 0),
                    kind: Kind::Map(Vec::new()),
                })
            }
            ev => {
                let root = p.node(ev, span)?;
                p.expect_end()?;
                return Ok(root);
            }
        }
    }
}

/// The event stream, with the anchors seen so far (`&a` … `*a`).
struct Events<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    origin: &'a str,
    anchors: HashMap<usize, Node>,
}

impl<'a> Events<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span)> {
        match self.parser.next_event() {
            Some(Ok(e)) => Ok(e),
            Some(Err(e)) => Err(syntax_error(self.origin, &e)),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn err(&self, pos: Pos, msg: impl std::fmt::Display) -> Error {
        Error::input(format!("{}:{}:{}: {msg}", self.origin, pos.line, pos.col))
    }

    /// Only the end of the stream may follow the first document.
    fn expect_end(&mut self) -> Result<()> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::DocumentEnd => continue,
                Event::StreamEnd => return Ok(()),
                _ => {
                    return Err(self.err(
                        Pos::of(&span.start, 0),
                        "a preset is one YAML document; this file has another after `---`: \
                         split it into one file per preset",
                    ))
                }
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node> {
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quote = match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => 1,
                    _ => 0,
                };
                let pos = Pos::of(&span.start, quote);
                let kind = self.scalar(&text, style, tag.as_deref(), pos)?;
                (Node { pos, kind }, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let pos = Pos::of(&span.start, 0);
                self.no_tag(tag.as_deref(), pos)?;
                (self.sequence(pos)?, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let pos = Pos::of(&span.start, 0);
                self.no_tag(tag.as_deref(), pos)?;
                (self.mapping(pos)?, anchor)
            }
            Event::Alias(id) => {
                let pos = Pos::of(&span.start, 0);
                let mut n =
                    self.anchors.get(&id).cloned().ok_or_else(|| {
                        self.err(pos, "this alias names no anchor defined before it")
                    })?;
                n.pos = pos;
                return Ok(n);
            }
            _ => {
                return Err(self.err(Pos::of(&span.start, 0), "unexpected YAML structure"));
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn sequence(&mut self, pos: Pos) -> Result<Node> {
        let mut items = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if ev == Event::SequenceEnd {
                return Ok(Node {
                    pos,
                    kind: Kind::Seq(items),
                });
            }
            items.push(self.node(ev, span)?);
        }
    }

    /// A mapping; keys are scalars, each at most once (as OmegaConf requires).
    fn mapping(&mut self, pos: Pos) -> Result<Node> {
        let mut entries: Vec<(String, Pos, Node)> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if ev == Event::MappingEnd {
                return Ok(Node {
                    pos,
                    kind: Kind::Map(entries),
                });
            }
            let key_pos = Pos::of(&span.start, 0);
            let key = match ev {
                Event::Scalar(text, ..) => text.into_owned(),
                _ => return Err(self.err(key_pos, "a key must be a plain name")),
            };
            if let Some((_, first, _)) = entries.iter().find(|(k, ..)| *k == key) {
                return Err(self.err(
                    key_pos,
                    format!(
                        "`{key}` is given twice (first on line {}); keep one",
                        first.line
                    ),
                ));
            }
            let (ev, span) = self.next()?;
            let value = self.node(ev, span)?;
            entries.push((key, key_pos, value));
        }
    }

    fn no_tag(&self, tag: Option<&Tag>, pos: Pos) -> Result<()> {
        match tag {
            None => Ok(()),
            Some(t) => Err(self.err(
                pos,
                format!("the tag `{t}` is not supported: a preset holds plain values only"),
            )),
        }
    }

    /// Types a scalar: quoted and block scalars are strings; `!!str`
    /// forces a string; any other tag is refused (a preset never builds
    /// objects); plain scalars follow PyYAML/OmegaConf.
    fn scalar(&self, text: &str, style: ScalarStyle, tag: Option<&Tag>, pos: Pos) -> Result<Kind> {
        if let Some(t) = tag {
            let core = t.is_yaml_core_schema() || t.handle == "!!";
            return match (core, t.suffix.as_str()) {
                (true, "str") => Ok(Kind::Str(text.to_string())),
                _ => Err(self.err(
                    pos,
                    format!("the tag `{t}` is not supported: a preset holds plain values only"),
                )),
            };
        }
        if style != ScalarStyle::Plain {
            return Ok(Kind::Str(text.to_string()));
        }
        resolve_plain(text)
            .ok_or_else(|| self.err(pos, format!("the number `{text}` is too large")))
    }
}

fn syntax_error(origin: &str, e: &ScanError) -> Error {
    let m = e.marker();
    Error::input(format!(
        "{origin}:{}:{}: not valid YAML: {}; a preset is `name: value` lines (pytti's \
         format)",
        m.line(),
        m.col() + 1,
        e.info()
    ))
}

/// A plain scalar typed as PyYAML's SafeLoader with OmegaConf's float rule
/// types it; `None` for an integer beyond 128 bits.
pub fn resolve_plain(text: &str) -> Option<Kind> {
    static RES: OnceLock<[Regex; 3]> = OnceLock::new();
    let [boolean, float, int] = RES.get_or_init(|| {
        [
            Regex::new(
                r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
            ),
            Regex::new(concat!(
                r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?",
                r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+",
                r"|\.[0-9_]+(?:[eE][-+][0-9]+)?",
                r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
            )),
            Regex::new(concat!(
                r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)",
                r"|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
            )),
        ]
        .map(|r| r.expect("valid pattern"))
    });
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Some(Kind::Null);
    }
    if boolean.is_match(text) {
        let t = matches!(text.to_ascii_lowercase().as_str(), "yes" | "true" | "on");
        return Some(Kind::Bool(t));
    }
    if float.is_match(text) {
        return Some(Kind::Float(parse_float(text)));
    }
    if int.is_match(text) {
        return parse_int(text).map(Kind::Int);
    }
    Some(Kind::Str(text.to_string()))
}

/// Splits a sign off a number's text.
fn sign_of(text: &str) -> (i128, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

fn parse_float(text: &str) -> f64 {
    let clean = text.replace('_', "");
    let (sign, body) = sign_of(&clean);
    let sign = sign as f64;
    let lower = body.to_ascii_lowercase();
    if lower == ".inf" {
        return sign * f64::INFINITY;
    }
    if lower == ".nan" {
        return f64::NAN;
    }
    if body.contains(':') {
        // Base 60: `1:30.5` is 90.5.
        return sign
            * body.split(':').fold(0.0, |acc, part| {
                acc * 60.0 + part.parse::<f64>().unwrap_or(0.0)
            });
    }
    sign * body.parse::<f64>().unwrap_or(f64::NAN)
}

fn parse_int(text: &str) -> Option<i128> {
    let clean = text.replace('_', "");
    let (sign, body) = sign_of(&clean);
    let value = if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| {
            acc.checked_mul(60)?.checked_add(part.parse::<i128>().ok()?)
        })?
    } else if body.len() > 1 && body.starts_with('0') {
        i128::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i128>().ok()?
    };
    value.checked_mul(sign)
}
