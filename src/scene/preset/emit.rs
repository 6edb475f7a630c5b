//! Writing translated settings as TOML text, remembering for every value
//! where it came from in the YAML file.

use super::yaml::{Kind, Node, Pos};
use crate::{Error, Result};

/// Maps offsets of the generated TOML back to YAML positions: each token
/// written records its offset and its YAML position; an offset belongs to
/// the last token that starts at or before it.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    anchors: Vec<(usize, Pos)>,
}

impl SourceMap {
    /// The YAML position of the TOML byte `offset`.
    pub fn pos_at(&self, offset: usize) -> Pos {
        let i = self.anchors.partition_point(|(o, _)| *o <= offset);
        if i == 0 {
            Pos::DEFAULT
        } else {
            self.anchors[i - 1].1
        }
    }
}

struct Writer<'a> {
    out: String,
    map: SourceMap,
    origin: &'a str,
}

impl Writer<'_> {
    fn anchor(&mut self, pos: Pos) {
        self.map.anchors.push((self.out.len(), pos));
    }

    fn value(&mut self, key: &str, node: &Node) -> Result<()> {
        self.anchor(node.pos);
        match &node.kind {
            Kind::Null => {
                return Err(Error::input(format!(
                    "{}: setting `{key}`: a list or mapping may not hold null (an empty value)",
                    super::at(self.origin, node.pos)
                )))
            }
            Kind::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Kind::Int(i) => {
                if i64::try_from(*i).is_err() {
                    return Err(Error::input(format!(
                        "{}: setting `{key}`: {i} is out of range (at most 64-bit numbers)",
                        super::at(self.origin, node.pos)
                    )));
                }
                self.out.push_str(&i.to_string());
            }
            Kind::Float(x) => self.out.push_str(&float_text(*x)),
            Kind::Str(s) => self.out.push_str(&quote(s)),
            Kind::Seq(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.value(key, item)?;
                }
                self.out.push(']');
            }
            Kind::Map(entries) => {
                self.out.push('{');
                for (i, (k, kpos, v)) in entries.iter().enumerate() {
                    self.out.push_str(if i > 0 { ", " } else { " " });
                    self.anchor(*kpos);
                    self.out.push_str(&quote(k));
                    self.out.push_str(" = ");
                    self.value(key, v)?;
                }
                self.out.push_str(" }");
            }
        }
        Ok(())
    }
}

/// Writes `settings` (name, key position, value) as TOML lines.
pub fn emit(settings: &[(String, Pos, Node)], origin: &str) -> Result<(String, SourceMap)> {
    let mut w = Writer {
        out: String::new(),
        map: SourceMap::default(),
        origin,
    };
    for (key, kpos, node) in settings {
        w.anchor(*kpos);
        w.out.push_str(key);
        w.out.push_str(" = ");
        w.value(key, node)?;
        w.out.push('\n');
    }
    Ok((w.out, w.map))
}

/// A float as TOML writes it, exactly (Rust's shortest round-trip form).
fn float_text(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        let s = format!("{x:?}");
        if s.contains(['.', 'e']) {
            s
        } else {
            format!("{s}.0")
        }
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
