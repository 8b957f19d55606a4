//! Configuration errors: [`ConfigError`] and its [`Diagnostic`]s, each one line naming
//! `file:line:col`, the field and what to fix. Also the translation of the `toml` crate's
//! errors (syntax and serde) into diagnostics.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read configuration {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. Never empty; sorted by position.
    #[error("{}", lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics of an [`ConfigError::Invalid`] (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(diags) => diags,
            ConfigError::Io { .. } => &[],
        }
    }
}

fn lines(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

/// One problem in a configuration file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes), as editors count.
    pub col: usize,
    /// Where in the document, e.g. `service[1].backend[0].weight`; empty when unknown (e.g. a
    /// syntax error between keys).
    pub field: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: field: message` (without `field: ` when the field is unknown), the
    /// form editors and CI annotators recognise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.col)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Turns byte offsets of one file into diagnostics.
pub(crate) struct Locator<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Locator<'_> {
    pub fn diagnostic(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, col) = line_col(self.text, offset);
        Diagnostic {
            path: self.path.to_owned(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset. Offsets past the end or inside
/// a UTF-8 sequence are clamped rather than trusted: they come from other crates' spans.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A diagnostic for one `toml` error (syntax or serde), at its span.
pub(crate) fn toml_diagnostic(
    loc: &Locator<'_>,
    doc: &DeTable<'_>,
    err: &toml::de::Error,
) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    let field = field_at(doc, &span).unwrap_or_default();
    let mut message = tidy_message(err.message());
    let found = loc
        .text
        .get(span.start..)
        .and_then(|rest| rest.chars().next());
    if let Some(c) = found.filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        // The parser only says "unexpected key or value"; the real news is the byte itself.
        message = format!(
            "control character U+{:04X} is not allowed in TOML (is this a binary file?)",
            u32::from(c)
        );
    } else if value_missing(loc.text, span.start) {
        // toml reads the empty value as an unquoted string and says "string values must be
        // quoted", which sends the operator looking for a string that is not there.
        message = "missing value after `=`".to_owned();
    } else if message.ends_with("invalid type: table, expected an array")
        && loc
            .text
            .get(span.start..)
            .is_some_and(|t| t.starts_with('[') && !t.starts_with("[["))
    {
        // `[service.backend]` where `[[service.backend]]` was meant: a common slip.
        message.push_str("; write the header with double brackets, [[...]], to add an entry");
    } else if message == "duplicate key" {
        let key = loc.text.get(span.clone()).map(str::trim).unwrap_or("");
        if !key.is_empty() && key.len() <= 64 && !key.contains('\n') {
            message = format!("duplicate key `{key}`: a key or table can be defined only once");
        }
    }
    loc.diagnostic(span.start, field, message)
}

/// True when `offset` is on a line like `key =` with nothing (or a comment) after the `=`.
fn value_missing(text: &str, offset: usize) -> bool {
    let Some(before) = text.get(..offset) else {
        return false;
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[offset..];
    let line_after = &rest[..rest.find('\n').unwrap_or(rest.len())];
    let after = line_after.trim();
    before[line_start..].trim_end().ends_with('=') && (after.is_empty() || after.starts_with('#'))
}

/// The `toml` crate's `message()` is already the one meaningful line (its `Display` adds a
/// multi-line source snippet we do not want); what remains is serde's Rust-flavoured
/// vocabulary, which an operator editing TOML should not have to translate.
fn tidy_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let mut msg = first
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table")
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing required key");
    // "expected struct PortTable" names a Rust type; in the file it is a table.
    if let Some(i) = msg.find("expected struct ") {
        msg.truncate(i);
        msg.push_str("expected a table");
    }
    if msg.is_empty() {
        "invalid TOML".to_owned()
    } else {
        msg
    }
}

/// The path of the most specific key or value in `doc` whose span contains `span.start`,
/// e.g. `service[1].backend[0].weight`.
pub(crate) fn field_at(doc: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    walk_table(doc, span.start, String::new(), &mut best);
    best.map(|(_, path)| path)
}

/// Depth-first over the whole tree rather than descending only into containing spans: a
/// table made by a `[header]` does not necessarily span the keys written under it.
fn walk_table(
    table: &DeTable<'_>,
    offset: usize,
    prefix: String,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table {
        let mut path = prefix.clone();
        if !path.is_empty() {
            path.push('.');
        }
        push_key(&mut path, key.get_ref());
        consider(key.span(), offset, &path, best);
        walk_value(value, offset, path, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    path: String,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), offset, &path, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, offset, format!("{path}[{i}]"), best);
            }
        }
        _ => {}
    }
}

/// Keeps the candidate with the smallest span containing `offset`: the innermost element.
fn consider(span: Range<usize>, offset: usize, path: &str, best: &mut Option<(usize, String)>) {
    let contains = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !contains {
        return;
    }
    let len = span.len();
    if best.as_ref().is_none_or(|(l, _)| len <= *l) {
        *best = Some((len, path.to_owned()));
    }
}

fn push_key(path: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "a = 1\nb = \"é\" x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'x' is the 10th byte of line 2 but its 9th character ("é" is two bytes).
        assert_eq!(line_col(text, 15), (2, 9));
        // Past the end and mid-character offsets are clamped, never a panic.
        assert_eq!(line_col(text, 1000), (3, 1));
        assert_eq!(line_col(text, 12), (2, 6));
    }

    #[test]
    fn serde_vocabulary_becomes_toml_vocabulary() {
        assert_eq!(
            tidy_message("invalid type: integer `5`, expected struct DpdkTable"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(
            tidy_message("invalid type: string \"a\", expected a sequence"),
            "invalid type: string \"a\", expected an array"
        );
        assert_eq!(tidy_message("first\nsecond"), "first");
    }

    #[test]
    fn field_at_finds_array_of_tables_index() {
        let text = "[[service]]\nname = \"a\"\n[[service]]\nname = \"b\"\n[[service.backend]]\nweight = 0\n";
        let doc = DeTable::parse(text).unwrap();
        let at = text.rfind('0').unwrap();
        assert_eq!(
            field_at(doc.get_ref(), &(at..at + 1)).as_deref(),
            Some("service[1].backend[0].weight")
        );
        let at = text.find("\"b\"").unwrap();
        assert_eq!(
            field_at(doc.get_ref(), &(at..at + 3)).as_deref(),
            Some("service[1].name")
        );
    }

    #[test]
    fn display_is_one_line_per_diagnostic() {
        let d = |line, field: &str| Diagnostic {
            path: PathBuf::from("f.toml"),
            line,
            col: 3,
            field: field.to_owned(),
            message: "bad".to_owned(),
        };
        let e = ConfigError::Invalid(vec![d(1, "a.b"), d(2, "")]);
        assert_eq!(e.to_string(), "f.toml:1:3: a.b: bad\nf.toml:2:3: bad");
    }
}
