//! Configuration errors: [`ConfigError`] and its [`Diagnostic`]s, each one line naming
//! `file:line:col`, the field and what to fix. Also the translation of the `toml` crate's
//! errors (syntax and serde) into diagnostics.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// At most this many diagnostics are kept and shown; the rest are counted. A file with 20,000
/// errors is answered with its first 100 and a count, not a page per error.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read configuration {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", lines(diagnostics, *more))]
    Invalid {
        /// Never empty; sorted by position; at most [`MAX_DIAGNOSTICS`].
        diagnostics: Vec<Diagnostic>,
        /// How many errors were found beyond `diagnostics`.
        more: usize,
    },
}

impl ConfigError {
    /// The diagnostics of an [`ConfigError::Invalid`] (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
            ConfigError::Io { .. } => &[],
        }
    }

    /// Every diagnostic, sorted by position as a reader goes through the file, the first
    /// [`MAX_DIAGNOSTICS`] kept.
    pub(crate) fn invalid(mut diags: Vec<Diagnostic>) -> ConfigError {
        diags.sort_by_key(|d| (d.line, d.col));
        let more = diags.len().saturating_sub(MAX_DIAGNOSTICS);
        diags.truncate(MAX_DIAGNOSTICS);
        ConfigError::Invalid {
            diagnostics: diags,
            more,
        }
    }
}

fn lines(diags: &[Diagnostic], more: usize) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    if let (Some(last), true) = (diags.last(), more > 0) {
        out.push_str(&format!(
            "\n{}: and {more} more error(s) after line {} not shown",
            last.path.display(),
            last.line
        ));
    }
    out
}

/// One problem in a configuration file, at a position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// At most this many characters of a value are quoted in a diagnostic: a 1 MB bad value is
/// named by its beginning, not echoed whole.
pub const ECHO_MAX_CHARS: usize = 64;

/// `s`, or its first [`ECHO_MAX_CHARS`] characters followed by `…`.
pub(crate) fn cut(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(ECHO_MAX_CHARS) {
        None => s.into(),
        Some((end, _)) => format!("{}…", &s[..end]).into(),
    }
}

/// `message` with every quoted value in it (`"..."`, as `{:?}` writes a string) cut to
/// [`ECHO_MAX_CHARS`] characters, its length said: `"aaaa…" (4096 characters)`. One place
/// for every diagnostic, so no check has to remember to bound what it quotes.
fn bound_quotes(message: &str) -> Cow<'_, str> {
    if message.len() <= ECHO_MAX_CHARS {
        return message.into();
    }
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..];
        // The closing quote is the first not escaped by a backslash.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in inside.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            rest = inside;
            break;
        };
        let quoted = &inside[..close];
        match quoted.char_indices().nth(ECHO_MAX_CHARS) {
            None => out.push_str(quoted),
            Some((end, _)) => {
                let mut head = &quoted[..end];
                // Never end inside an escape: drop a trailing odd backslash.
                let slashes = head.len() - head.trim_end_matches('\\').len();
                if slashes % 2 == 1 {
                    head = &head[..head.len() - 1];
                }
                out.push_str(head);
                out.push_str(&format!("…\" ({} characters)", quoted.chars().count()));
                rest = &inside[close + 1..];
                continue;
            }
        }
        out.push('"');
        rest = &inside[close + 1..];
    }
    out.push_str(rest);
    out.into()
}

/// Turns byte offsets of one file into diagnostics. The start of every line is indexed once,
/// so a position costs a binary search, not a scan from the start of the file.
pub(crate) struct Locator<'a> {
    pub text: &'a str,
    pub path: &'a Path,
    line_starts: Vec<usize>,
    /// The last position asked: (line, offset, column).
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str, path: &'a Path) -> Locator<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            text,
            path,
            line_starts,
            last: std::cell::Cell::new((1, 0, 1)),
        }
    }

    pub fn diagnostic(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, col) = self.line_col(offset);
        let message = message.into();
        let message = match bound_quotes(&message) {
            Cow::Borrowed(_) => message,
            Cow::Owned(bounded) => bounded,
        };
        Diagnostic {
            path: self.path.to_owned(),
            line,
            col,
            field: field.into(),
            message,
        }
    }

    /// 1-based line and column (in characters) of a byte offset. Offsets past the end or
    /// inside a UTF-8 sequence are clamped rather than trusted: they come from other crates'
    /// spans.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let line = self.line(offset);
        // Columns are counted from the last position asked on the same line when it is
        // before this one (checks go through the file in order), so that a file on one long
        // line with many errors is not counted from the line's start for each.
        let (last_line, last_offset, last_col) = self.last.get();
        let (from, col0) = if last_line == line && last_offset <= offset {
            (last_offset, last_col)
        } else {
            (self.line_starts[line - 1], 1)
        };
        let col = col0 + self.text[from..offset].chars().count();
        self.last.set((line, offset, col));
        (line, col)
    }

    /// The 1-based line of a byte offset (clamped like [`Locator::line_col`]).
    pub fn line(&self, offset: usize) -> usize {
        let offset = self.clamp(offset);
        // The number of lines starting at or before `offset` is its 1-based line.
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

/// A diagnostic for one `toml` error (syntax or serde), at its span.
pub(crate) fn toml_diagnostic(
    loc: &Locator<'_>,
    doc: &DeTable<'_>,
    err: &toml::de::Error,
) -> Diagnostic {
    let mut message = tidy_message(err.message());
    let span = match err.span() {
        Some(span) => span,
        None if message == "recursion limit" => {
            // The parser refuses a dotted key of too many parts without saying where it is.
            match deep_key(loc.text) {
                Some((at, parts)) => {
                    message = format!(
                        "this key has {parts} dotted parts; the TOML parser reads at most {}",
                        TOML_KEY_PARTS_LIMIT - 1
                    );
                    at..at
                }
                None => 0..0,
            }
        }
        None => 0..0,
    };
    let field = field_at(doc, &span).unwrap_or_default();
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

/// The `toml` parser refuses a key (a `[table.header]` or a dotted `a.b = 1`) of this many
/// parts or more (its `LIMIT`).
const TOML_KEY_PARTS_LIMIT: usize = 80;

/// The first key of at least [`TOML_KEY_PARTS_LIMIT`] dotted parts: its offset and part count.
/// One pass over the text; dots inside quotes do not count.
fn deep_key(text: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let key = match body.strip_prefix('[') {
            Some(header) => header.trim_start_matches('['),
            None => body,
        };
        let mut parts = 1;
        let mut quote = None;
        for c in key.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '.') => parts += 1,
                (None, ']' | '=' | '#') => break,
                _ => {}
            }
        }
        if parts >= TOML_KEY_PARTS_LIMIT {
            return Some((offset + line.len() - body.len(), parts));
        }
        offset += line.len();
    }
    None
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

pub(crate) fn push_key(path: &mut String, key: &str) {
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
        let loc = Locator::new(text, Path::new("t.toml"));
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(5), (1, 6));
        assert_eq!(loc.line_col(6), (2, 1));
        // 'x' is the 10th byte of line 2 but its 9th character ("é" is two bytes).
        assert_eq!(loc.line_col(15), (2, 9));
        // Past the end and mid-character offsets are clamped, never a panic.
        assert_eq!(loc.line_col(1000), (3, 1));
        assert_eq!(loc.line_col(12), (2, 6));
        // Asked out of order, and again after a later position on the same line.
        assert_eq!(loc.line_col(15), (2, 9));
        assert_eq!(loc.line_col(6), (2, 1));
        assert_eq!(loc.line_col(15), (2, 9));
        assert_eq!(loc.line_col(5), (1, 6));
        let empty = Locator::new("", Path::new("t.toml"));
        assert_eq!(empty.line_col(0), (1, 1));
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
        let e = ConfigError::invalid(vec![d(2, ""), d(1, "a.b")]);
        assert_eq!(e.to_string(), "f.toml:1:3: a.b: bad\nf.toml:2:3: bad");
        // Past the bound: the first ones by position, and a count of the rest.
        let many: Vec<Diagnostic> = (1..=MAX_DIAGNOSTICS + 7).rev().map(|l| d(l, "")).collect();
        let e = ConfigError::invalid(many);
        assert_eq!(e.diagnostics().len(), MAX_DIAGNOSTICS);
        assert_eq!(e.diagnostics()[0].line, 1);
        let text = e.to_string();
        assert_eq!(text.lines().count(), MAX_DIAGNOSTICS + 1);
        assert!(
            text.ends_with("f.toml: and 7 more error(s) after line 100 not shown"),
            "{text}"
        );
    }

    #[test]
    fn long_quoted_values_are_cut() {
        let long = "é".repeat(5000);
        let loc = Locator::new("x = 1\n", Path::new("t.toml"));
        let d = loc.diagnostic(
            0,
            "x",
            format!("mac {long:?} is bad; write \"02:00:00:00:00:01\""),
        );
        let cut = "é".repeat(ECHO_MAX_CHARS);
        assert_eq!(
            d.message,
            format!("mac \"{cut}…\" (5000 characters) is bad; write \"02:00:00:00:00:01\"")
        );
        // Escapes are never cut in half; short quotes are left alone.
        let escaped = "\\".repeat(100);
        let d = loc.diagnostic(
            0,
            "x",
            format!("path {escaped:?} and \"ok\" {}", "y".repeat(80)),
        );
        assert!(
            d.message
                .starts_with(&format!("path \"{}…\" (200 characters)", "\\\\".repeat(32))),
            "{}",
            d.message
        );
        assert!(d.message.contains("and \"ok\""), "{}", d.message);
    }
}
