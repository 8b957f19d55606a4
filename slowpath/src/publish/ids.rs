//! Backend ids: stable across reloads, so a flow's backend survives a config change that
//! reorders or edits the file.

use std::collections::HashMap;

use conf::Config;
use dataplane::snapshot::BackendId;

/// (service name, backend name) -> id. Ids are dense from 1; 0 is "none" (as in Katran).
#[derive(Debug, Clone)]
pub struct BackendIds {
    ids: HashMap<(String, String), BackendId>,
    next: BackendId,
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
        }
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

    /// Gives every backend of `cfg` its id (config order for new ones).
    pub fn allocate(&mut self, cfg: &Config) {
        for s in &cfg.services {
            for b in &s.backends {
                self.get(&s.name, &b.name);
            }
        }
    }

    /// Looks an id up without allocating.
    pub fn find(&self, service: &str, backend: &str) -> Option<BackendId> {
        self.ids
            .get(&(service.to_string(), backend.to_string()))
            .copied()
    }
}
