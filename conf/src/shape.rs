//! The shape of the file (which keys each table has, of which TOML type, which are required),
//! checked over the parsed document before serde sees it, in one pass over every key.
//!
//! serde stops at its first error, so a file with nine misspelt keys used to take ten runs.
//! Here every unknown key (with the closest valid name), every value of the wrong type and
//! every missing required key is reported, and the offending keys are taken out of the
//! document (a required one is given an empty placeholder), so that serde then reads the rest and validation reports the semantic errors of
//! the same file in the same run. The tables below mirror [`crate::schema`]; a test holds the
//! two to the same keys and types.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Diagnostic, Locator, cut, push_key};

/// The TOML type a key takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Int,
    Str,
    Bool,
    /// An array of integers.
    Ints,
    /// An array of strings.
    Strs,
    /// A table (`[name]` or an inline table).
    Table(&'static [Key]),
    /// An array of tables (`[[name]]` or an array of inline tables).
    Tables(&'static [Key]),
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Int => "an integer",
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Ints | Kind::Strs | Kind::Tables(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// One key of a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        required: true,
    }
}

use Kind::{Bool, Int, Ints, Str, Strs, Table, Tables};

/// The whole file ([`crate::schema::Document`]).
pub(crate) const DOCUMENT: &[Key] = &[
    opt("dpdk", Table(DPDK)),
    opt("global", Table(GLOBAL)),
    opt("port", Tables(PORT)),
    opt("service", Tables(SERVICE)),
];

const DPDK: &[Key] = &[
    opt("eal_args", Strs),
    opt("workers", Ints),
    opt("slowpath_cpu", Int),
    opt("mbufs", Int),
    opt("mbuf_cache", Int),
    opt("mbuf_data_room", Int),
    opt("rx_descriptors", Int),
    opt("tx_descriptors", Int),
    opt("burst", Int),
    opt("idle_sleep_us", Int),
];

const GLOBAL: &[Key] = &[
    opt("hash_seed", Int),
    opt("maglev_table_size", Int),
    opt("flow_table_capacity", Int),
    opt("control_socket", Str),
    opt("flow_state_dir", Str),
    opt("metrics_listen", Str),
    opt("control_optional", Bool),
    opt("timeouts", Table(TIMEOUTS)),
    opt("health", Table(HEALTH_GLOBAL)),
    opt("neighbors", Table(NEIGHBORS)),
    opt("announce", Table(ANNOUNCE)),
    opt("sync", Table(SYNC)),
    opt("fullnat", Table(FULLNAT)),
];

const SYNC: &[Key] = &[
    opt("peers", Strs),
    opt("key_file", Str),
    opt("port", Int),
    opt("source", Str),
    opt("max_exceptions", Int),
    opt("max_messages_per_sec", Int),
    opt("refresh_ms", Int),
    opt("expiry_ms", Int),
    opt("startup_wait_ms", Int),
];

const FULLNAT: &[Key] = &[opt("local_ports", Str), opt("port_quiet_ms", Int)];

const ANNOUNCE: &[Key] = &[
    opt("bird_file", Str),
    opt("bird_socket", Str),
    opt("disable_file", Str),
];

const HEALTH_GLOBAL: &[Key] = &[opt("source_ports", Str), opt("spread_pct", Int)];

const NEIGHBORS: &[Key] = &[opt("refresh_ms", Int), opt("retry_ms", Int)];

const TIMEOUTS: &[Key] = &[
    opt("tcp_syn", Int),
    opt("tcp_established", Int),
    opt("tcp_closing", Int),
    opt("udp", Int),
];

const PORT: &[Key] = &[
    req("name", Str),
    req("device", Str),
    opt("mac", Str),
    opt("mtu", Int),
    opt("addresses", Strs),
    opt("neighbors", Tables(NEIGHBOR)),
    opt("kernel_interface", Str),
    opt("routes", Tables(ROUTE)),
];

const NEIGHBOR: &[Key] = &[req("ip", Str), req("mac", Str)];

const ROUTE: &[Key] = &[req("prefix", Str), req("via", Str)];

const SERVICE: &[Key] = &[
    req("name", Str),
    req("vip", Str),
    opt("protocol", Str),
    opt("port", Int),
    opt("forwarding", Str),
    opt("tunnel_source", Str),
    opt("gue_port", Int),
    opt("local_addresses", Strs),
    opt("proxy_protocol", Str),
    opt("hash", Str),
    opt("on_empty", Str),
    opt("backend", Tables(BACKEND)),
    opt("on_change", Str),
    opt("state_file", Str),
    opt("allow", Strs),
    opt("deny", Strs),
    opt("health", Table(HEALTH)),
    opt("announce", Str),
    opt("disable_file", Str),
];

const HEALTH: &[Key] = &[
    opt("type", Str),
    opt("port", Int),
    opt("interval_ms", Int),
    opt("timeout_ms", Int),
    opt("rise", Int),
    opt("fall", Int),
    opt("method", Str),
    opt("path", Str),
    opt("host", Str),
    opt("expect_status", Str),
    opt("sni", Str),
    opt("send", Str),
    opt("through_tunnel", Bool),
];

const BACKEND: &[Key] = &[
    req("name", Str),
    req("address", Str),
    opt("port", Int),
    opt("weight", Int),
    opt("backup", Bool),
    opt("mac", Str),
    opt("admin", Str),
    opt("track", Str),
    opt("health", Table(HEALTH)),
];

/// What the shape check found.
pub(crate) struct Checked {
    pub diags: Vec<Diagnostic>,
    /// Field paths of the keys taken out of the document (not read under another name), and
    /// of the required keys (missing or of the wrong type) given an empty placeholder so
    /// that the rest of their table can be read: already reported, so the semantic checks
    /// report nothing about them, and must not take them for absent.
    pub dropped: HashSet<String>,
}

/// Checks `doc` against [`DOCUMENT`], reporting every problem and removing the keys that have
/// one (so that serde can read the rest). Visits every key once.
pub(crate) fn check(doc: &mut DeTable<'_>, loc: &Locator<'_>) -> Checked {
    let mut c = Checker {
        loc,
        diags: Vec::new(),
        dropped: HashSet::new(),
    };
    c.table(doc, DOCUMENT, "", 0..0);
    Checked {
        diags: c.diags,
        dropped: c.dropped,
    }
}

/// The valid key closest to `unknown`, if one is close enough to be a likely misspelling.
pub(crate) fn closest<'k>(
    unknown: &str,
    names: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
    let len = unknown.chars().count();
    names
        .into_iter()
        .map(|n| (strsim::damerau_levenshtein(unknown, n), n))
        .filter(|&(d, n)| d <= len.max(n.chars().count()).div_ceil(3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

struct Checker<'a> {
    loc: &'a Locator<'a>,
    diags: Vec<Diagnostic>,
    dropped: HashSet<String>,
}

impl Checker<'_> {
    fn error(&mut self, offset: usize, field: &str, message: String) {
        self.diags.push(self.loc.diagnostic(offset, field, message));
    }

    /// `span` is the table's own (its header or its braces), for a missing key.
    fn table(&mut self, t: &mut DeTable<'_>, keys: &'static [Key], path: &str, span: Range<usize>) {
        let mut drop: HashSet<String> = HashSet::new();
        // Unknown keys that are a likely misspelling of a key that is missing: read under the
        // meant name, so that their values are checked and later checks do not take the
        // meant key for absent.
        let mut rename: Vec<(String, Range<usize>, &'static str)> = Vec::new();
        for (k, v) in t.iter_mut() {
            let name: &str = k.get_ref();
            let field = join(path, name);
            let Some(key) = keys.iter().find(|key| key.name == name) else {
                let guess = closest(name, keys.iter().map(|k| k.name));
                let message = match guess {
                    Some(g) => format!("unknown key `{name}`; did you mean `{g}`?"),
                    None => format!(
                        "unknown key `{name}`, expected one of {}",
                        keys.iter()
                            .map(|k| format!("`{}`", k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(k.span().start, &field, message);
                drop.insert(name.to_owned());
                if let Some(g) = guess.and_then(|g| keys.iter().find(|k| k.name == g)) {
                    rename.push((name.to_owned(), k.span(), g.name));
                }
                continue;
            };
            if !self.value(v, key.kind, &field) {
                if key.required {
                    *v = placeholder(v.span().start);
                    self.dropped.insert(field);
                } else {
                    drop.insert(name.to_owned());
                }
            }
        }
        // A rename applies only when the meant key is missing and meant by one key alone.
        let mut meant: HashMap<&'static str, usize> = HashMap::new();
        for (_, _, g) in &rename {
            *meant.entry(*g).or_default() += 1;
        }
        rename.retain(|(_, _, g)| !t.contains_key(*g) && meant[g] == 1);
        let renamed: HashSet<&str> = rename.iter().map(|(from, _, _)| from.as_str()).collect();
        let mut moved = Vec::new();
        for (from, key_span, to) in &rename {
            if let Some(v) = t.get(from.as_str()) {
                moved.push((
                    Spanned::new(key_span.clone(), Cow::Borrowed(*to)),
                    v.clone(),
                ));
            }
        }
        if !drop.is_empty() {
            // One rebuild rather than a removal each: the map may shift its entries per removal.
            let old = std::mem::take(t);
            for (k, v) in old {
                let name: &str = k.get_ref();
                if !drop.contains(name) {
                    t.insert(k, v);
                } else if !renamed.contains(name) {
                    self.dropped.insert(join(path, name));
                }
            }
        }
        for (k, v) in moved {
            t.insert(k, v);
        }
        for key in keys.iter().filter(|k| k.required) {
            if !t.contains_key(key.name) {
                let message = format!("missing required key `{}`", key.name);
                self.error(span.start, path, message);
                let at = span.start..span.start;
                t.insert(
                    Spanned::new(at, Cow::Borrowed(key.name)),
                    placeholder(span.start),
                );
                self.dropped.insert(join(path, key.name));
            }
        }
    }

    /// Checks one value; false (after reporting) when it is not of `kind`.
    fn value(&mut self, v: &mut Spanned<DeValue<'_>>, kind: Kind, field: &str) -> bool {
        let span = v.span();
        let ok = match (kind, v.get_mut()) {
            (Kind::Int, DeValue::Integer(i)) => {
                if i64::from_str_radix(i.as_str(), i.radix()).is_err() {
                    self.error(
                        span.start,
                        field,
                        format!(
                            "integer {} is too large for TOML (at most {})",
                            cut(&i.to_string()),
                            i64::MAX
                        ),
                    );
                    return false;
                }
                true
            }
            (Kind::Str, DeValue::String(_)) | (Kind::Bool, DeValue::Boolean(_)) => true,
            (Kind::Ints | Kind::Strs, DeValue::Array(items)) => {
                let each = if matches!(kind, Kind::Ints) {
                    Kind::Int
                } else {
                    Kind::Str
                };
                let mut ok = true;
                for (i, item) in items.iter_mut().enumerate() {
                    ok &= self.value(item, each, &format!("{field}[{i}]"));
                }
                return ok;
            }
            (Kind::Table(keys), DeValue::Table(t)) => {
                self.table(t, keys, field, span);
                return true;
            }
            (Kind::Tables(keys), DeValue::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter_mut().enumerate() {
                    let item_field = format!("{field}[{i}]");
                    let item_span = item.span();
                    match item.get_mut() {
                        DeValue::Table(t) => self.table(t, keys, &item_field, item_span),
                        other => {
                            let found = describe(other);
                            self.error(
                                item_span.start,
                                &item_field,
                                format!("invalid type: {found}, expected a table"),
                            );
                            ok = false;
                        }
                    }
                }
                return ok;
            }
            _ => false,
        };
        if !ok {
            let mut message = format!(
                "invalid type: {}, expected {}",
                describe(v.get_ref()),
                kind.expected()
            );
            if matches!(kind, Kind::Tables(_)) && v.get_ref().is_table() {
                let header = self.loc.text.get(span.start..).unwrap_or("");
                if header.starts_with('[') && !header.starts_with("[[") {
                    // `[service.backend]` where `[[service.backend]]` was meant: a common slip.
                    message.push_str(
                        "; write the header with double brackets, [[...]], to add an entry",
                    );
                }
            }
            self.error(span.start, field, message);
        }
        ok
    }
}

/// What a required key (every one is a string) that is missing or of the wrong type is read
/// as: an empty string, at an empty span.
fn placeholder(at: usize) -> Spanned<DeValue<'static>> {
    Spanned::new(at..at, DeValue::String(Cow::Borrowed("")))
}

fn join(path: &str, key: &str) -> String {
    let mut p = path.to_owned();
    if !p.is_empty() {
        p.push('.');
    }
    push_key(&mut p, key);
    p
}

/// A value as serde names it in "invalid type: ..." (strings cut to a bounded prefix).
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{}`", cut(&i.to_string())),
        DeValue::Float(f) => format!("floating point `{}`", cut(f.as_str())),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(_) => "datetime".to_owned(),
        DeValue::Array(_) => "array".to_owned(),
        DeValue::Table(_) => "table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A TOML value of `kind` that the schema accepts, with every key of every table set.
    fn sample(kind: Kind) -> String {
        match kind {
            Kind::Int => "1".to_owned(),
            Kind::Str => "\"s\"".to_owned(),
            Kind::Bool => "true".to_owned(),
            Kind::Ints => "[1]".to_owned(),
            Kind::Strs => "[\"s\"]".to_owned(),
            Kind::Table(keys) => inline(keys),
            Kind::Tables(keys) => format!("[{}]", inline(keys)),
        }
    }

    fn inline(keys: &[Key]) -> String {
        let pairs: Vec<String> = keys
            .iter()
            .map(|k| format!("{} = {}", k.name, sample(k.kind)))
            .collect();
        format!("{{ {} }}", pairs.join(", "))
    }

    /// Every table of the shape with the path of its first instance in a document.
    fn tables(keys: &'static [Key], path: &str, out: &mut Vec<(String, &'static [Key])>) {
        out.push((path.to_owned(), keys));
        for k in keys {
            if let Kind::Table(sub) | Kind::Tables(sub) = k.kind {
                tables(sub, &join(path, k.name), out);
            }
        }
    }

    fn serde_reads(text: &str) -> Result<crate::schema::Document, toml::de::Error> {
        crate::schema::Document::deserialize(toml::Deserializer::parse(text).expect("toml"))
    }

    /// The shape has exactly the schema's keys, and a value of each key's kind is one serde
    /// accepts.
    #[test]
    fn shape_is_the_schema() {
        let every_key: Vec<String> = DOCUMENT
            .iter()
            .map(|k| format!("{} = {}", k.name, sample(k.kind)))
            .collect();
        let every_key = every_key.join("\n");
        serde_reads(&every_key).unwrap_or_else(|e| panic!("{e}\n{every_key}"));

        let mut all = Vec::new();
        tables(DOCUMENT, "", &mut all);
        assert_eq!(all.len(), 16);
        for (path, keys) in all {
            // serde lists the keys it expects when it meets one it does not know.
            let mut doc: toml::Table = toml::from_str(&every_key).expect("sample");
            let mut at: &mut toml::Table = &mut doc;
            for part in path.split('.').filter(|p| !p.is_empty()) {
                at = match at.get_mut(part).expect("sampled") {
                    toml::Value::Table(t) => t,
                    toml::Value::Array(a) => a[0].as_table_mut().expect("table"),
                    _ => unreachable!(),
                };
            }
            at.insert("zz_unknown".into(), toml::Value::Integer(1));
            let text = toml::to_string(&doc).expect("toml");
            let err = serde_reads(&text)
                .expect_err("unknown key")
                .message()
                .to_owned();
            let (_, expected) = err.split_once("expected").expect(&err);
            let mut serde_keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let mut shape_keys: Vec<&str> = keys.iter().map(|k| k.name).collect();
            serde_keys.sort_unstable();
            shape_keys.sort_unstable();
            assert_eq!(serde_keys, shape_keys, "table {path:?}");
        }
    }

    #[test]
    fn closest_finds_misspellings_only() {
        let keys = ["idle_sleep_us", "burst", "workers", "weight", "dpdk"];
        assert_eq!(closest("idle_sleep_uss", keys), Some("idle_sleep_us"));
        assert_eq!(closest("idle_sleep", keys), Some("idle_sleep_us"));
        assert_eq!(closest("wieght", keys), Some("weight"));
        assert_eq!(closest("dpkd", keys), Some("dpdk"));
        assert_eq!(closest("brust", keys), Some("burst"));
        assert_eq!(closest("zz_unknown", keys), None);
        assert_eq!(closest("x", keys), None);
    }
}
