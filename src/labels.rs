//! Candidate labels: parsing the comma-separated list and applying the prompt template.
use thiserror::Error;

/// The HF zero-shot pipeline's default; leaving it out changes SigLIP's scores.
pub const DEFAULT_TEMPLATE: &str = "This is a photo of {}.";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("no labels given: pass a comma-separated list such as --labels \"cat, dog\"")]
    Empty,
    #[error("label {index} is blank in {list:?}: remove the extra comma")]
    Blank { index: usize, list: String },
    #[error("template {0:?} has no `{{}}` placeholder for the label")]
    NoPlaceholder(String),
    #[error("template has {0} `{{}}` placeholders, it needs exactly one (as Python's str.format with one label)")]
    ManyPlaceholders(usize),
    #[error("template {0:?} has a brace that is not `{{}}`: write a literal brace as `{{{{` or `}}}}` (Python's str.format)")]
    BadField(String),
    #[error("template is {0} characters, at most {MAX_TEMPLATE_CHARS}")]
    TemplateTooLong(usize),
    #[error("label {index} is {chars} characters, at most {MAX_LABEL_CHARS} (the model reads 64 tokens)")]
    TooLong { index: usize, chars: usize },
    #[error("label list has an unterminated quote: {0:?}")]
    Unterminated(String),
    #[error("label {index}: text after a closing quote, write a quote inside quotes as \"\"")]
    AfterQuote { index: usize },
    #[error("too many labels: {count} (at most {max})")]
    TooMany { count: usize, max: usize },
}

/// Longest label accepted from a list: the text tower reads 64 tokens (a few hundred
/// characters at most), so longer text is work the model cannot use.
pub const MAX_LABEL_CHARS: usize = 256;
/// Longest template accepted.
pub const MAX_TEMPLATE_CHARS: usize = 256;

/// Splits a label list the way a CSV record is split: on commas, each label trimmed, and a
/// label in double quotes may contain commas (`"a red, white and blue flag", cat`; `""` is a
/// quote inside quotes). Any blank entry is an error rather than silently dropped: a stray
/// comma usually means a typo the user wants to hear about. Labels are at most
/// [`MAX_LABEL_CHARS`] characters.
pub fn parse_list(list: &str) -> Result<Vec<String>, LabelError> {
    if list.trim().is_empty() {
        return Err(LabelError::Empty);
    }
    let mut labels = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        let index = labels.len() + 1;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let label = if chars.next_if_eq(&'"').is_some() {
            let mut quoted = String::new();
            loop {
                match chars.next() {
                    None => return Err(LabelError::Unterminated(list.to_string())),
                    Some('"') if chars.next_if_eq(&'"').is_some() => quoted.push('"'),
                    Some('"') => break,
                    Some(c) => quoted.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err(LabelError::AfterQuote { index });
            }
            quoted.trim().to_string()
        } else {
            let mut plain = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                plain.push(c);
            }
            plain.trim().to_string()
        };
        labels.push(check_label(label, index, list)?);
        if chars.next().is_none() {
            return Ok(labels);
        }
    }
}

/// Labels given as a list already (a JSON array, repeated form fields): trimmed, checked.
pub fn check_labels(items: &[String]) -> Result<Vec<String>, LabelError> {
    if items.is_empty() {
        return Err(LabelError::Empty);
    }
    let joined = items.join(", ");
    items.iter().enumerate().map(|(i, l)| check_label(l.trim().to_string(), i + 1, &joined)).collect()
}

fn check_label(label: String, index: usize, list: &str) -> Result<String, LabelError> {
    if label.is_empty() {
        return Err(LabelError::Blank { index, list: list.to_string() });
    }
    let chars = label.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(LabelError::TooLong { index, chars });
    }
    Ok(label)
}

/// A prompt template with one `{}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    /// The text before and after the placeholder, with `{{`/`}}` already turned into braces.
    before: String,
    after: String,
}

impl Template {
    /// Python's `str.format` with one positional argument, as the HF pipeline applies it
    /// (`template.format(label)`): exactly one `{}`, `{{` and `}}` are literal braces, any
    /// other field (`{0}`, `{name}`, a lone brace) is refused; at most [`MAX_TEMPLATE_CHARS`]
    /// characters.
    pub fn new(template: &str) -> Result<Self, LabelError> {
        let chars = template.chars().count();
        if chars > MAX_TEMPLATE_CHARS {
            return Err(LabelError::TemplateTooLong(chars));
        }
        let (mut parts, mut cur, mut holes) = (Vec::new(), String::new(), 0usize);
        let mut it = template.chars().peekable();
        while let Some(c) = it.next() {
            match (c, it.peek()) {
                ('{', Some('{')) | ('}', Some('}')) => {
                    it.next();
                    cur.push(c);
                }
                ('{', Some('}')) => {
                    it.next();
                    holes += 1;
                    parts.push(std::mem::take(&mut cur));
                }
                ('{', _) | ('}', _) => return Err(LabelError::BadField(template.to_string())),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        match holes {
            0 => Err(LabelError::NoPlaceholder(template.to_string())),
            1 => Ok(Self {
                text: template.to_string(),
                after: parts.pop().unwrap_or_default(),
                before: parts.pop().unwrap_or_default(),
            }),
            n => Err(LabelError::ManyPlaceholders(n)),
        }
    }

    /// The prompt for one label.
    pub fn apply(&self, label: &str) -> String {
        format!("{}{label}{}", self.before, self.after)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for Template {
    fn default() -> Self {
        Self::new(DEFAULT_TEMPLATE).expect("the default template is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_trims() {
        assert_eq!(parse_list(" cat ,a dog,  rocket").unwrap(), vec!["cat", "a dog", "rocket"]);
    }

    #[test]
    fn single_label() {
        assert_eq!(parse_list("cat").unwrap(), vec!["cat"]);
    }

    #[test]
    fn empty_and_blank_are_errors() {
        assert_eq!(parse_list("  "), Err(LabelError::Empty));
        assert!(matches!(parse_list("cat,,dog"), Err(LabelError::Blank { index: 2, .. })));
        assert!(matches!(parse_list("cat,"), Err(LabelError::Blank { index: 2, .. })));
    }

    #[test]
    fn template_applies_and_needs_placeholder() {
        let t = Template::default();
        assert_eq!(t.apply("cat"), "This is a photo of cat.");
        assert!(Template::new("a photo").is_err());
        assert_eq!(Template::new("{} or {}"), Err(LabelError::ManyPlaceholders(2)));
        // Python: "{{}}".format("x") == "{}" (no placeholder); "{{{}}}".format("x") == "{x}"
        assert_eq!(Template::new("{{}}"), Err(LabelError::NoPlaceholder("{{}}".into())));
        assert_eq!(Template::new("{{{}}}").unwrap().apply("x"), "{x}");
        assert!(matches!(Template::new("a {0} photo"), Err(LabelError::BadField(_))));
        assert!(matches!(Template::new("{} }"), Err(LabelError::BadField(_))));
        // the amplification case: 10,000 placeholders in 20 KB
        assert_eq!(Template::new(&"{}".repeat(10_000)), Err(LabelError::TemplateTooLong(20_000)));
    }

    #[test]
    fn quoted_labels_may_contain_commas() {
        assert_eq!(parse_list(r#""a red, white and blue flag", cat"#).unwrap(), vec!["a red, white and blue flag", "cat"]);
        assert_eq!(parse_list(r#"cat , "say ""hi""" "#).unwrap(), vec!["cat", r#"say "hi""#]);
        assert_eq!(parse_list(r#"a "quoted" word"#).unwrap(), vec![r#"a "quoted" word"#], "quotes inside a plain label are kept");
        assert!(matches!(parse_list(r#""open, cat"#), Err(LabelError::Unterminated(_))));
        assert!(matches!(parse_list(r#""a" b, cat"#), Err(LabelError::AfterQuote { index: 1 })));
        assert!(matches!(parse_list(r#"cat, """#), Err(LabelError::Blank { index: 2, .. })));
    }

    #[test]
    fn labels_are_bounded() {
        let long = "x".repeat(MAX_LABEL_CHARS + 1);
        assert!(matches!(parse_list(&format!("cat, {long}")), Err(LabelError::TooLong { index: 2, .. })));
        assert_eq!(check_labels(&["a, b".into(), " c ".into()]).unwrap(), vec!["a, b", "c"]);
        assert!(check_labels(&[]).is_err());
    }
}
