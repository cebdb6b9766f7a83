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
    #[error("too many labels: {count} (at most {max})")]
    TooMany { count: usize, max: usize },
}

/// Splits on commas and trims each label. Any blank entry is an error rather than silently
/// dropped: a stray comma usually means a typo the user wants to hear about.
pub fn parse_list(list: &str) -> Result<Vec<String>, LabelError> {
    if list.trim().is_empty() {
        return Err(LabelError::Empty);
    }
    list.split(',')
        .enumerate()
        .map(|(i, raw)| {
            let label = raw.trim();
            if label.is_empty() {
                Err(LabelError::Blank { index: i + 1, list: list.to_string() })
            } else {
                Ok(label.to_string())
            }
        })
        .collect()
}

/// A prompt template with one `{}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    pub fn new(template: &str) -> Result<Self, LabelError> {
        if !template.contains("{}") {
            return Err(LabelError::NoPlaceholder(template.to_string()));
        }
        Ok(Self(template.to_string()))
    }

    /// Python's `str.format` with one positional argument: every `{}` is replaced.
    pub fn apply(&self, label: &str) -> String {
        self.0.replace("{}", label)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Template {
    fn default() -> Self {
        Self(DEFAULT_TEMPLATE.to_string())
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
        assert_eq!(Template::new("{} or {}").unwrap().apply("x"), "x or x");
    }
}
