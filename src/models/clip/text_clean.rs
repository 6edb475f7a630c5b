//! Text clean-up before CLIP's BPE, matching `clip/simple_tokenizer.py`:
//! `basic_clean` (ftfy's `fix_text`, `html.unescape` twice, strip) and
//! `whitespace_clean`.
//!
//! ftfy is reproduced for what prompts contain: HTML entities (ftfy's strict,
//! semicolon-terminated decoding, including its all-caps spellings), C1 control
//! characters read as Windows-1252, Latin ligatures, full-/half-width forms,
//! curly quotes, line breaks, ANSI terminal escapes, control characters and NFC
//! normalisation, applied per line and repeated until nothing changes, as ftfy
//! does. **Gap:** ftfy's mojibake repair (`fix_encoding`: re-decoding text such as
//! `"cafÃ©"` that was UTF-8 read as Latin-1/Windows-1252, and its related
//! `restore_byte_a0`/`replace_lossy_sequences`/`decode_inconsistent_utf8` steps)
//! is a large heuristic and is not reproduced; such text is tokenised as it is.
//! Surrogate fixing has no equivalent since Rust strings are always valid.

use std::borrow::Cow;
use std::sync::OnceLock;

use icu_normalizer::ComposingNormalizerBorrowed;
use regex::Regex;

use super::html_tables::{FTFY_UPPER, HTML5, INVALID_CHARREFS, INVALID_CODEPOINTS};

/// Python's `str.isspace`: Unicode White_Space plus the bidi separators
/// U+001C–U+001F, which Python also counts.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` (no arguments).
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

fn html5_lookup(name: &str) -> Option<&'static str> {
    HTML5
        .binary_search_by(|(k, _)| (*k).cmp(name))
        .ok()
        .map(|i| HTML5[i].1)
}

fn numeric_charref(digits: &str, radix: u32) -> String {
    // Python parses arbitrarily long numbers; anything above U+10FFFF is invalid.
    let num = u32::from_str_radix(digits, radix).unwrap_or(u32::MAX);
    if let Ok(i) = INVALID_CHARREFS.binary_search_by(|(k, _)| k.cmp(&num)) {
        return INVALID_CHARREFS[i].1.to_string();
    }
    if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        return "\u{FFFD}".to_string();
    }
    if INVALID_CODEPOINTS.binary_search(&num).is_ok() {
        return String::new();
    }
    char::from_u32(num).map(String::from).unwrap_or_default()
}

/// Python's `html.unescape`: numeric and named character references, including
/// the HTML5 names that may omit the semicolon (`&amp`, `&copy`) and the
/// longest-prefix rule for unknown names (`&notit;` → `¬it;`).
pub fn html_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)").expect("valid")
    });
    re.replace_all(s, |caps: &regex::Captures| {
        let body = &caps[1];
        if let Some(num) = body.strip_prefix('#') {
            let num = num.trim_end_matches(';');
            if let Some(hex) = num.strip_prefix(['x', 'X']) {
                numeric_charref(hex, 16)
            } else {
                numeric_charref(num, 10)
            }
        } else if let Some(v) = html5_lookup(body) {
            v.to_string()
        } else {
            // Longest known prefix (at least two characters), the rest kept.
            let cuts: Vec<usize> = body.char_indices().map(|(i, _)| i).skip(2).collect();
            for &cut in cuts.iter().rev() {
                if let Some(v) = html5_lookup(&body[..cut]) {
                    return format!("{v}{}", &body[cut..]);
                }
            }
            format!("&{body}")
        }
    })
}

/// ftfy's `unescape_html`: only `&name;` references that are unambiguous
/// (semicolon-terminated HTML5 names, plus all-caps spellings of lower-case
/// names) and numeric references that consume their semicolon.
fn ftfy_unescape(s: &str) -> Cow<'_, str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid"));
    re.replace_all(s, |caps: &regex::Captures| {
        let text = &caps[0];
        let name = &text[1..];
        if let Some(v) = html5_lookup(name) {
            return v.to_string();
        }
        if let Ok(i) = FTFY_UPPER.binary_search_by(|(k, _)| (*k).cmp(name)) {
            return FTFY_UPPER[i].1.to_string();
        }
        if text.starts_with("&#") {
            let u = html_unescape(text);
            if u.contains(';') {
                text.to_string()
            } else {
                u.into_owned()
            }
        } else {
            text.to_string()
        }
    })
}

/// Windows-1252 for bytes 0x80–0x9F ("sloppy": undefined bytes stay Latin-1).
fn windows_1252(c: char) -> char {
    const TABLE: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    match c as u32 {
        n @ 0x80..=0x9F => TABLE[(n - 0x80) as usize],
        _ => c,
    }
}

fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

fn is_removed_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

/// One pass of ftfy's fixers (after HTML unescaping), in ftfy's order.
fn fix_pass(text: &str) -> String {
    // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = windows_1252(c);
        if let Some(l) = ligature(c) {
            // Ligature expansions contain no wide forms or curly quotes.
            out.push_str(l);
            continue;
        }
        if c == '\u{3000}' {
            out.push(' ');
            continue;
        }
        if ('\u{FF01}'..='\u{FFEF}').contains(&c) {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            let alt = nfkc.normalize(s);
            if alt != s {
                for a in alt.chars() {
                    out.push(uncurl(a));
                }
                continue;
            }
        }
        out.push(uncurl(c));
    }
    // fix_line_breaks
    let out = out
        .replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
    // remove_terminal_escapes
    static ANSI: OnceLock<Regex> = OnceLock::new();
    let ansi = ANSI.get_or_init(|| Regex::new("\x1b\\[((?:[0-9]|;)*)([a-zA-Z])").expect("valid"));
    let out = ansi.replace_all(&out, "");
    // remove_control_chars
    let out: String = out.chars().filter(|&c| !is_removed_control(c)).collect();
    // NFC
    ComposingNormalizerBorrowed::new_nfc()
        .normalize(&out)
        .into_owned()
}

fn uncurl(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        c => c,
    }
}

/// ftfy's `fix_text` with default settings, minus mojibake repair (see the
/// module docs): each line is fixed until stable. HTML entities are decoded
/// unless a line containing `<` has been seen (ftfy's `unescape_html="auto"`).
pub fn fix_text(text: &str) -> String {
    let mut unescape = true;
    let mut out = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        if unescape && segment.contains('<') {
            unescape = false;
        }
        let mut cur = segment.to_string();
        loop {
            let orig = cur.clone();
            if unescape {
                cur = ftfy_unescape(&cur).into_owned();
            }
            cur = fix_pass(&cur);
            if cur == orig {
                break;
            }
        }
        out.push_str(&cur);
    }
    out
}

/// `basic_clean`: ftfy, HTML unescaping twice, surrounding whitespace removed.
pub fn basic_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_unescape(&fixed);
    let twice = html_unescape(&once);
    py_strip(&twice).to_string()
}

/// `whitespace_clean`: runs of whitespace become one space; ends trimmed.
pub fn whitespace_clean(text: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"\s+").expect("valid"));
    let collapsed = re.replace_all(text, " ");
    py_strip(&collapsed).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_unescape_matches_python_rules() {
        assert_eq!(
            html_unescape("&amp;lt; &amp &copy2021 &notit; &#65;&#x42;"),
            "&lt; & ©2021 ¬it; AB"
        );
        assert_eq!(
            html_unescape("&#128; &#0; &#x110000; &#1;"),
            "€ \u{FFFD} \u{FFFD} "
        );
        assert_eq!(html_unescape("&bogus; & alone"), "&bogus; & alone");
    }

    #[test]
    fn ftfy_subset() {
        assert_eq!(fix_text("it&#x2019;s ﬂubberiﬁc!"), "it's flubberific!");
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("P&EACUTE;REZ"), "PÉREZ");
        assert_eq!(fix_text("e\u{301}"), "é");
        assert_eq!(fix_text("<b> &amp;"), "<b> &amp;");
    }
}
