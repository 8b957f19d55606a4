//! Fulcrum's configuration: one TOML file, its shape checked ([`shape`]: unknown keys, wrong
//! types, missing keys), read by serde ([`schema`]) and validated into the runtime [`model`].
//! Every error of a file is reported in one run, each naming `file:line:col`, the field, and
//! what is wrong.
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
mod shape;
mod validate;

use std::path::Path as FilePath;

use serde::Deserialize;
use toml::de::DeTable;

use error::Locator;
pub use error::{ConfigError, Diagnostic};
pub use model::*;
pub use validate::is_prime;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &FilePath) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_bytes(&bytes, path)
}

/// Validates the bytes of a configuration file as [`load`] does once it has read them: text
/// that is not UTF-8 is refused at its first bad byte, the rest goes to [`parse`]. `path` is
/// recorded in the result and in every diagnostic.
pub fn parse_bytes(bytes: &[u8], path: &FilePath) -> Result<Config, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            // The valid prefix locates the first bad byte as line:col.
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let loc = Locator::new(valid, path);
            let bad = bytes[e.valid_up_to()];
            Err(ConfigError::invalid(vec![loc.diagnostic(
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
pub fn parse(text: &str, path: &FilePath) -> Result<Config, ConfigError> {
    let loc = Locator::new(text, path);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    // Only the first syntax error: after it, the parser's recovery mostly reports echoes of
    // the same mistake (one missing `]` gives an error on every following line). The partly
    // recovered document still names the field where the error is.
    if let Some(first) = syntax_errors.first() {
        return Err(ConfigError::invalid(vec![error::toml_diagnostic(
            &loc,
            doc.get_ref(),
            first,
        )]));
    }
    if doc.get_ref().is_empty() {
        return Err(ConfigError::invalid(vec![loc.diagnostic(
            0,
            "",
            "the file has no settings (it is empty or only comments); a configuration needs at \
             least one [[port]] (see conf/examples/minimal.toml)",
        )]));
    }
    // The shape (unknown keys, wrong types, missing keys) is checked in one pass and the
    // offending keys removed, so serde reads the rest and the semantic checks below report
    // their errors in the same run.
    let mut doc = doc;
    let mut shape = shape::check(doc.get_mut(), &loc);
    let mut diags = std::mem::take(&mut shape.diags);
    let document = match schema::Document::deserialize(toml::Deserializer::from(doc.clone())) {
        Ok(d) => d,
        Err(e) => {
            // Only what the shape check does not know about reaches here.
            diags.push(error::toml_diagnostic(&loc, doc.get_ref(), &e));
            return Err(ConfigError::invalid(diags));
        }
    };
    match validate::validate(document, &loc, &shape.dropped) {
        Ok(config) if diags.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::invalid(diags)),
        Err(more) => {
            diags.extend(more);
            Err(ConfigError::invalid(diags))
        }
    }
}
