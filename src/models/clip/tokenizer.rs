//! CLIP's byte-level BPE tokenizer, token for token the same as OpenAI's
//! `clip/simple_tokenizer.py` and `clip.tokenize`.
//!
//! The 49408-token vocabulary (`bpe_simple_vocab_16e6.txt.gz`, MIT, OpenAI) is
//! embedded in the binary: 256 byte symbols, the same with the end-of-word mark
//! `</w>`, 48894 merges and the start/end tokens.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use regex::Regex;
use tch::{Kind, Tensor};

use super::text_clean::{basic_clean, whitespace_clean};
use crate::{Error, Result};

static VOCAB_GZ: &[u8] = include_bytes!("../../../assets/clip/bpe_simple_vocab_16e6.txt.gz");

/// Id of `<|startoftext|>`.
pub const START_TOKEN: i64 = 49406;
/// Id of `<|endoftext|>`; the largest id, which is how the text tower finds it.
pub const END_TOKEN: i64 = 49407;
/// Token positions of every released CLIP text tower.
pub const CONTEXT_LENGTH: usize = 77;
/// Size of the vocabulary.
pub const VOCAB_SIZE: usize = 49408;

const START_TEXT: &str = "<|startoftext|>";
const END_TEXT: &str = "<|endoftext|>";

/// GPT-2's reversible byte → printable character map (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut n = 0;
    for b in 0..256u32 {
        map[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(256 + n - 1).unwrap_or('\0')
        };
    }
    map
}

/// The CLIP tokenizer. Cheap to share; encodings of words are cached.
pub struct Tokenizer {
    encoder: HashMap<String, i64>,
    decoder: Vec<String>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    pattern: Regex,
    cache: Mutex<HashMap<String, Vec<i64>>>,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({} tokens)", self.decoder.len())
    }
}

impl Tokenizer {
    /// Builds the tokenizer from the embedded vocabulary.
    pub fn new() -> Tokenizer {
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .expect("the embedded CLIP vocabulary is a valid gzip UTF-8 file");
        // As the official code: skip the header line, keep 49152 - 256 - 2 merges.
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(49152 - 256 - 2)
            .map(|line| {
                let mut parts = line.split_whitespace();
                let a = parts.next().unwrap_or_default().to_string();
                let b = parts.next().unwrap_or_default().to_string();
                (a, b)
            })
            .collect();
        let byte_encoder = bytes_to_unicode();
        // The official vocabulary lists the byte symbols in the insertion order of
        // `bytes_to_unicode()`: the printable bytes first, then the remapped ones
        // (whose symbols are U+0100 onwards), i.e. sorted by symbol.
        let mut symbols: Vec<char> = byte_encoder.to_vec();
        symbols.sort_by_key(|&c| (u32::from(c) >= 256, u32::from(c)));
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(START_TEXT.to_string());
        vocab.push(END_TEXT.to_string());
        let encoder = vocab
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as i64))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let pattern = Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .expect("valid pattern");
        Tokenizer {
            encoder,
            decoder: vocab,
            ranks,
            byte_encoder,
            pattern,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A process-wide tokenizer, built on first use (building one decompresses
    /// and indexes the vocabulary, a few tens of milliseconds).
    pub fn shared() -> &'static Tokenizer {
        static SHARED: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
        SHARED.get_or_init(Tokenizer::new)
    }

    /// Number of tokens in the vocabulary (49408).
    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// BPE of one pre-token (already mapped to byte symbols) into ids.
    fn bpe(&self, token: &str) -> Vec<i64> {
        if token == START_TEXT {
            return vec![START_TOKEN];
        }
        if token == END_TEXT {
            return vec![END_TOKEN];
        }
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(token).cloned()) {
            return ids;
        }
        let chars: Vec<char> = token.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, w[0].clone(), w[1].clone()))
                })
                .min_by_key(|(r, _, _)| *r);
            let Some((_, first, second)) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
        }
        let ids: Vec<i64> = word
            .iter()
            .map(|w| self.encoder.get(w).copied().unwrap_or(END_TOKEN))
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(token.to_string(), ids.clone());
        }
        ids
    }

    /// The token ids of a text, without start/end tokens: cleaned (ftfy subset,
    /// HTML unescaping, whitespace), lower-cased, split with CLIP's pattern and
    /// byte-pair encoded.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let text = whitespace_clean(&basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            let mapped: String = m
                .as_str()
                .bytes()
                .map(|b| self.byte_encoder[b as usize])
                .collect();
            ids.extend(self.bpe(&mapped));
        }
        ids
    }

    /// Text of token ids (`</w>` becomes a space), for messages and debugging.
    pub fn decode(&self, ids: &[i64]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(tok) = usize::try_from(id).ok().and_then(|i| self.decoder.get(i)) else {
                continue;
            };
            for c in tok.chars() {
                if let Some(b) = self.byte_encoder.iter().position(|&e| e == c) {
                    bytes.push(b as u8);
                } else {
                    bytes.extend_from_slice(c.to_string().as_bytes());
                }
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }

    /// Checks that `text` fits a context of `context` tokens with its start
    /// and end tokens, as `clip.tokenize` (without `truncate`) requires.
    pub fn check_fits(&self, text: &str, context: usize) -> Result<()> {
        let len = self.encode(text).len() + 2;
        if len > context {
            return Err(too_long(text, len, context));
        }
        Ok(())
    }

    /// `clip.tokenize`: rows `[start, ids…, end, 0…]` of `context` int64 tokens,
    /// [N, context] on the CPU. A text that does not fit is an error quoting it,
    /// unless `truncate`, which cuts it and keeps the end token last.
    pub fn tokenize(&self, texts: &[&str], context: usize, truncate: bool) -> Result<Tensor> {
        if context < 2 {
            return Err(Error::input(format!(
                "a CLIP context of {context} tokens cannot hold the start and end tokens"
            )));
        }
        let mut data = vec![0i64; texts.len() * context];
        for (row, text) in texts.iter().enumerate() {
            let mut tokens = Vec::with_capacity(context);
            tokens.push(START_TOKEN);
            tokens.extend(self.encode(text));
            tokens.push(END_TOKEN);
            if tokens.len() > context {
                if truncate {
                    tokens.truncate(context);
                    tokens[context - 1] = END_TOKEN;
                } else {
                    return Err(too_long(text, tokens.len(), context));
                }
            }
            data[row * context..row * context + tokens.len()].copy_from_slice(&tokens);
        }
        Ok(Tensor::f_from_slice(&data)?
            .f_to_kind(Kind::Int64)?
            .f_reshape([texts.len() as i64, context as i64])?)
    }
}

/// The error of a prompt longer than the context (the official tokenizer
/// raises one too; pytti does not truncate either).
fn too_long(text: &str, len: usize, context: usize) -> Error {
    Error::input(format!(
        "the prompt \"{text}\" is {len} tokens long, more than CLIP's context of {context} \
         (start and end tokens included); shorten it"
    ))
}
