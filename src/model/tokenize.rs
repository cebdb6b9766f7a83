//! SigLIP text → token ids: the slow `SiglipTokenizer`'s canonicalization done here, the
//! sentencepiece pieces by the `tokenizers` crate, then `</s>` and padding to a fixed length.
//!
//! Why canonicalize by hand: a converted `tokenizer.json` cannot express the slow tokenizer's
//! `canonicalize_text` (transformers PR #26522), so its exact steps are reproduced here and
//! tested against ids from the Python tokenizer.
use std::path::Path;

use tokenizers::Tokenizer;

use super::bundle::{ModelError, TextPreprocessing};

/// SentencePiece's word-boundary marker.
const SPIECE_UNDERLINE: char = '\u{2581}';

pub struct TextTokenizer {
    tok: Tokenizer,
    rules: TextPreprocessing,
    max_len: usize,
    pad_id: u32,
    eos_id: u32,
}

impl TextTokenizer {
    pub fn from_file(path: &Path, rules: TextPreprocessing, max_len: usize, pad_id: u32, eos_id: u32) -> Result<Self, ModelError> {
        let tok = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        Ok(Self { tok, rules, max_len, pad_id, eos_id })
    }

    /// The text exactly as SiglipTokenizer hands it to sentencepiece.
    pub fn canonicalize(&self, text: &str) -> String {
        canonicalize(text, &self.rules)
    }

    /// Ids padded (with `pad_id`) or truncated to exactly `max_len`, ending in `</s>` unless
    /// padded after it: HF truncates the pieces to `max_len - 1` and then appends `</s>`.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let canonical = self.canonicalize(text);
        let enc = self
            .tok
            .encode(canonical.as_str(), false)
            .map_err(|e| ModelError::Tokenizer { path: "tokenizer.json".into(), reason: format!("cannot tokenize {text:?}: {e}") })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        ids.truncate(self.max_len - 1);
        ids.push(self.eos_id as i64);
        ids.resize(self.max_len, self.pad_id as i64);
        Ok(ids)
    }
}

/// `SiglipTokenizer.tokenize` + `canonicalize_text`: prefix the boundary marker (user text's own
/// markers become spaces), lowercase, drop ASCII punctuation (Python's `string.punctuation`),
/// collapse whitespace runs to one space and strip the ends, in that order.
pub fn canonicalize(text: &str, rules: &TextPreprocessing) -> String {
    let mut s = String::with_capacity(text.len() + 3);
    s.push(SPIECE_UNDERLINE);
    s.extend(text.chars().map(|c| if c == SPIECE_UNDERLINE { ' ' } else { c }));
    if rules.lowercase {
        s = s.to_lowercase();
    }
    if rules.strip_punctuation {
        s.retain(|c| !c.is_ascii_punctuation());
    }
    if rules.collapse_whitespace {
        let mut out = String::with_capacity(s.len());
        let mut in_space = false;
        for c in s.chars() {
            if py_isspace(c) {
                if !in_space {
                    out.push(' ');
                }
                in_space = true;
            } else {
                out.push(c);
                in_space = false;
            }
        }
        s = out;
    }
    s.trim_matches(py_isspace).to_string()
}

/// Python's `str.isspace` (what `re`'s `\s` matches): Unicode White_Space plus the ASCII
/// separators U+001C..U+001F, which Rust does not count as whitespace.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TextPreprocessing {
        TextPreprocessing { lowercase: true, strip_punctuation: true, collapse_whitespace: true }
    }

    #[test]
    fn canonicalizes_like_siglip() {
        let r = rules();
        assert_eq!(canonicalize("This is a photo of A Cat.", &r), "▁this is a photo of a cat");
        assert_eq!(canonicalize("  x--y...z\t\n w ", &r), "▁ xyz w");
        assert_eq!(canonicalize("a\u{a0}b\u{1f}c", &r), "▁a b c");
        assert_eq!(canonicalize("ca▁t", &r), "▁ca t");
        assert_eq!(canonicalize("!!!", &r), "▁");
        assert_eq!(canonicalize("ÀÉ Zürich", &r), "▁àé zürich");
    }

    #[test]
    fn rules_can_be_switched_off() {
        let r = TextPreprocessing { lowercase: false, strip_punctuation: false, collapse_whitespace: false };
        assert_eq!(canonicalize("A,  b", &r), "▁A,  b");
    }
}
