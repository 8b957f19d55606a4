//! Backend ids: stable across reloads, so a flow's backend survives a config change that
//! reorders or edits the file, and across restarts: the map is kept in a file beside the flow
//! tables ([`BackendIds::load`], saved on every allocation), so an adopted entry's backend id
//! names the same backend in the new process (dense ids index the per-backend counters, so
//! they are not derived from the names).
//!
//! The file has one line per backend, `id<TAB>service<TAB>backend`, names escaped (`\\`,
//! `\t`, `\n`).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use conf::Config;
use dataplane::snapshot::BackendId;

/// (service name, backend name) -> id. Ids are dense from 1; 0 is "none" (as in Katran).
#[derive(Debug, Clone)]
pub struct BackendIds {
    ids: HashMap<(String, String), BackendId>,
    next: BackendId,
    /// Where [`allocate`](Self::allocate) saves the map (`None`: nowhere).
    file: Option<PathBuf>,
}

impl Default for BackendIds {
    fn default() -> Self {
        BackendIds::new()
    }
}

impl BackendIds {
    pub fn new() -> Self {
        BackendIds {
            ids: HashMap::new(),
            next: BackendId::new(1),
            file: None,
        }
    }

    /// The map kept in `file`: what it holds, if it exists (a missing file is an empty map),
    /// and every allocation saved there from now on. An unreadable or malformed file is an
    /// error (the caller starts without it and says so).
    pub fn load(file: &Path) -> io::Result<BackendIds> {
        let mut ids = BackendIds::new();
        ids.file = Some(file.to_path_buf());
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("line {}", n + 1));
            let mut f = line.split('\t');
            let (Some(id), Some(svc), Some(b), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad());
            };
            let id: u32 = id.parse().map_err(|_| bad())?;
            if id == 0
                || ids
                    .ids
                    .insert((unescape(svc), unescape(b)), BackendId::new(id))
                    .is_some()
            {
                return Err(bad());
            }
            ids.next = BackendId::new(ids.next.get().max(id.saturating_add(1)));
        }
        Ok(ids)
    }

    /// Writes the map to its file (a new file renamed over the old one).
    fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut rows: Vec<_> = self.ids.iter().collect();
        rows.sort_by_key(|(_, id)| **id);
        let mut text = String::new();
        for ((s, b), id) in rows {
            text.push_str(&format!("{id}\t{}\t{}\n", escape(s), escape(b)));
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }

    /// The id of this backend, allocating one the first time it is seen.
    pub fn get(&mut self, service: &str, backend: &str) -> BackendId {
        let key = (service.to_string(), backend.to_string());
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.next;
        self.next = BackendId::new(id.get() + 1);
        self.ids.insert(key, id);
        id
    }

    /// Gives every backend of `cfg` its id (config order for new ones), and saves the map
    /// to its file if that made new ones.
    pub fn allocate(&mut self, cfg: &Config) {
        let before = self.next;
        for s in &cfg.services {
            for b in &s.backends {
                self.get(&s.name, &b.name);
            }
        }
        if self.next != before
            && let Err(e) = self.save()
        {
            tracing::warn!(
                file = %self.file.as_deref().unwrap_or(Path::new("")).display(),
                error = %e,
                "cannot save the backend ids: a restart may give backends other ids and \
                 send adopted flows elsewhere"
            );
        }
    }

    /// Looks an id up without allocating.
    pub fn find(&self, service: &str, backend: &str) -> Option<BackendId> {
        self.ids
            .get(&(service.to_string(), backend.to_string()))
            .copied()
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_a_restart_through_their_file() {
        let dir = std::env::temp_dir().join(format!("fulcrum-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("backend-ids");
        let _ = std::fs::remove_file(&file);
        let mut a = BackendIds::load(&file).unwrap();
        // Allocated over time, as reloads would: not config order.
        a.get("web", "b\tone");
        a.get("web", "b2");
        a.get("db\\x", "b3\n");
        a.save().unwrap();
        let mut b = BackendIds::load(&file).unwrap();
        assert_eq!(b.find("web", "b2"), Some(BackendId::new(2)));
        assert_eq!(b.find("db\\x", "b3\n"), Some(BackendId::new(3)));
        assert_eq!(b.find("web", "b\tone"), Some(BackendId::new(1)));
        assert_eq!(
            b.get("web", "new"),
            BackendId::new(4),
            "no id is given twice"
        );
        std::fs::write(&file, "1\tweb\n").unwrap();
        assert!(BackendIds::load(&file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
