//! The operator's admin state of a backend (`ctl drain|enable|disable`), applied at once.

use conf::AdminState;
use dataplane::engine::Engine;
use dataplane::snapshot::BackendId;

use crate::SlowPath;
use crate::health::Health;

/// Why an operator's admin state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no service {0:?}")]
    NoService(String),
    #[error("service {service:?} has no backend {backend:?}")]
    NoBackend { service: String, backend: String },
}

impl SlowPath {
    /// An operator's admin state for a backend (`ctl drain|enable|disable`), applied at once.
    /// Returns the generation published.
    pub fn set_admin(
        &mut self,
        engine: &mut Engine,
        service: &str,
        backend: &str,
        state: AdminState,
    ) -> Result<u64, AdminError> {
        let Some(s) = self.cfg.services.iter().find(|s| s.name == service) else {
            return Err(AdminError::NoService(service.to_string()));
        };
        // Ids outlive reloads: only the config in force says whether the backend exists.
        let id = s
            .backends
            .iter()
            .any(|b| b.name == backend)
            .then(|| self.publisher.ids().find(service, backend))
            .flatten()
            .ok_or_else(|| AdminError::NoBackend {
                service: service.to_string(),
                backend: backend.to_string(),
            })?;
        self.publisher.set_admin(id, state);
        Ok(self.publish_now(engine))
    }

    /// The operator's override of a backend's admin state (`ctl drain|enable|disable`), if
    /// any.
    pub fn admin_override(&self, id: BackendId) -> Option<AdminState> {
        self.publisher.admin(id)
    }

    /// What health checking says of a backend as last published (up when it has no check).
    pub fn health(&self, id: BackendId) -> Health {
        self.publisher.health(id)
    }

    /// Drops the operator's admin overrides of `backend` of `service` (of every backend of
    /// the service when `None`): the config's admin state applies again. Returns how many
    /// were dropped and the generation published.
    pub fn clear_admin(
        &mut self,
        engine: &mut Engine,
        service: &str,
        backend: Option<&str>,
    ) -> Result<(usize, u64), AdminError> {
        let Some(s) = self.cfg.services.iter().find(|s| s.name == service) else {
            return Err(AdminError::NoService(service.to_string()));
        };
        let names: Vec<String> = match backend {
            Some(b) if !s.backends.iter().any(|x| x.name == b) => {
                return Err(AdminError::NoBackend {
                    service: service.to_string(),
                    backend: b.to_string(),
                });
            }
            Some(b) => vec![b.to_string()],
            None => s.backends.iter().map(|b| b.name.clone()).collect(),
        };
        let mut cleared = 0;
        for name in names {
            if let Some(id) = self.publisher.ids().find(service, &name) {
                cleared += usize::from(self.publisher.clear_admin(id));
            }
        }
        Ok((cleared, self.publish_now(engine)))
    }
}
