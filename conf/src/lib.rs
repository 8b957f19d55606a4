//! Fulcrum's configuration: one TOML file, parsed with `deny_unknown_fields`, validated into
//! the runtime [`model`]. Every error names `file:line:col`, the field, and what is wrong.
//!
//! ```no_run
//! let config = conf::load(std::path::Path::new("/etc/fulcrum/fulcrum.toml"))?;
//! println!("{}", config.summary());
//! # Ok::<(), conf::ConfigError>(())
//! ```
//!
//! The file format is documented field by field in `conf/examples/reference.toml`.
#![deny(unsafe_code)]

mod error;
pub mod model;
mod schema;
mod validate;

use std::path::Path;

use serde::Deserialize;
use toml::de::DeTable;

use error::Locator;
pub use error::{ConfigError, Diagnostic};
pub use model::*;
pub use validate::is_prime;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            // The valid prefix locates the first bad byte as line:col.
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let loc = Locator { text: valid, path };
            let bad = bytes[e.valid_up_to()];
            Err(ConfigError::Invalid(vec![loc.diagnostic(
                valid.len(),
                "",
                format!(
                    "the file is not UTF-8 text (byte 0x{bad:02x} at offset {}); a configuration \
                     is a TOML text file: is this the right file?",
                    e.valid_up_to()
                ),
            )]))
        }
    }
}

/// Parses and validates configuration text; `path` is recorded in the result and in every
/// diagnostic.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let loc = Locator { text, path };
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    // Only the first syntax error: after it, the parser's recovery mostly reports echoes of
    // the same mistake (one missing `]` gives an error on every following line). The partly
    // recovered document still names the field where the error is.
    if let Some(first) = syntax_errors.first() {
        return Err(invalid(vec![error::toml_diagnostic(
            &loc,
            doc.get_ref(),
            first,
        )]));
    }
    if doc.get_ref().is_empty() {
        return Err(invalid(vec![loc.diagnostic(
            0,
            "",
            "the file has no settings (it is empty or only comments); a configuration needs at \
             least one [[port]] (see conf/examples/minimal.toml)",
        )]));
    }
    // serde stops at its first error; the schema is lax about values (see `schema`) so that
    // what it can reject is only the shape: unknown keys, wrong types, missing fields.
    let document = match schema::Document::deserialize(toml::Deserializer::from(doc.clone())) {
        Ok(d) => d,
        Err(e) => {
            return Err(invalid(vec![error::toml_diagnostic(
                &loc,
                doc.get_ref(),
                &e,
            )]));
        }
    };
    validate::validate(document, &loc).map_err(invalid)
}

/// Orders diagnostics by position, as a reader goes through the file.
fn invalid(mut diags: Vec<Diagnostic>) -> ConfigError {
    diags.sort_by_key(|d| (d.line, d.col));
    ConfigError::Invalid(diags)
}
