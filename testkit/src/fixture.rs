//! Config fixtures: TOML files under `tests/configs/`, with `{{name}}` placeholders for what
//! each test fills in itself (its EAL arguments, its scratch paths). Every placeholder must be
//! filled and every value must have a placeholder, so a fixture and its tests cannot drift
//! apart silently.

use std::fmt::Display;
use std::path::PathBuf;

/// A config fixture being filled in.
#[derive(Debug, Clone)]
pub struct Fixture {
    path: PathBuf,
    text: String,
}

/// The fixture `tests/configs/NAME`.
pub fn fixture(name: &str) -> Fixture {
    let path = crate::repo().join("tests/configs").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    Fixture { path, text }
}

impl Fixture {
    /// Puts `value` (as it is: quote strings in the fixture) wherever `{{key}}` stands.
    pub fn set(mut self, key: &str, value: impl Display) -> Fixture {
        let placeholder = format!("{{{{{key}}}}}");
        assert!(
            self.text.contains(&placeholder),
            "{} has no {placeholder}",
            self.path.display()
        );
        self.text = self.text.replace(&placeholder, &value.to_string());
        self
    }

    /// The config text; every placeholder must have been filled.
    pub fn render(self) -> String {
        if let Some(at) = self.text.find("{{") {
            let rest = &self.text[at..];
            let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
            panic!("{}: {} not filled", self.path.display(), &rest[..end]);
        }
        self.text
    }
}
