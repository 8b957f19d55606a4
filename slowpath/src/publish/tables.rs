//! Maglev tables a build need not compute: building one is the heavy part of a snapshot
//! (a 65,537-slot table per service), and most publications change few pools, so a build
//! takes the table of the snapshot in force (or one prepared off the slow-path loop, issue
//! 15's reload) whenever the service's members, their weights and order, the table size and
//! the seed are the same. Tables are a pure function of those, so a reused table is the one
//! the build would have computed.

use std::collections::HashMap;

use dataplane::maglev;
use dataplane::snapshot::{BackendRt, ServiceRt, Snapshot};

/// What a table was built from: its members' (name, weight), in table order; size; seed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipe {
    members: Vec<(String, u32)>,
    size: u32,
    seed: u64,
}

impl Recipe {
    fn of(members: &[&BackendRt], size: u32, seed: u64) -> Recipe {
        Recipe {
            members: members.iter().map(|b| (b.name.clone(), b.weight)).collect(),
            size,
            seed,
        }
    }
}

/// Tables built before, by service name.
#[derive(Debug, Default)]
pub struct Tables<'a> {
    by_service: HashMap<&'a str, Vec<(Recipe, &'a maglev::Table)>>,
}

impl<'a> Tables<'a> {
    /// Offers every table of `snap`.
    pub fn add_snapshot(&mut self, snap: &'a Snapshot) {
        for s in &snap.services {
            let members: Vec<&BackendRt> = s
                .members
                .iter()
                .filter_map(|id| snap.backend(*id))
                .collect();
            if members.len() != s.members.len() {
                continue;
            }
            self.add(s, Recipe::of(&members, s.maglev.size(), snap.seed));
        }
    }

    /// Offers every table of `prepared`.
    pub fn add_prepared(&mut self, prepared: &'a Prepared) {
        for (name, recipe, table) in &prepared.tables {
            self.by_service
                .entry(name)
                .or_default()
                .push((recipe.clone(), table));
        }
    }

    fn add(&mut self, s: &'a ServiceRt, recipe: Recipe) {
        self.by_service
            .entry(&s.name)
            .or_default()
            .push((recipe, &s.maglev));
    }

    /// Service `name`'s table over `members`: a copy of one built before from the same
    /// recipe, or a new one. The flag says whether it was reused.
    pub(super) fn table(
        &self,
        name: &str,
        members: &[&BackendRt],
        size: u32,
        seed: u64,
    ) -> (maglev::Table, bool) {
        let recipe = Recipe::of(members, size, seed);
        if let Some((_, t)) = self
            .by_service
            .get(name)
            .and_then(|c| c.iter().find(|(r, _)| *r == recipe))
        {
            return ((*t).clone(), true);
        }
        let mm: Vec<maglev::Member> = members
            .iter()
            .map(|b| maglev::Member {
                key: b.name.as_bytes(),
                weight: b.weight,
            })
            .collect();
        (maglev::Table::build(&mm, size, seed), false)
    }
}

/// A snapshot's Maglev tables built ahead (on any thread), for a later build to take.
#[derive(Debug, Default)]
pub struct Prepared {
    tables: Vec<(String, Recipe, maglev::Table)>,
}

impl Prepared {
    /// Takes the tables out of a snapshot built ahead.
    pub(super) fn of(snap: Snapshot) -> Prepared {
        let backends = snap.backends;
        let seed = snap.seed;
        let tables = snap
            .services
            .into_iter()
            .filter_map(|s| {
                let members: Vec<&BackendRt> = s
                    .members
                    .iter()
                    .map(|id| backends.get(id.index())?.as_ref())
                    .collect::<Option<_>>()?;
                let recipe = Recipe::of(&members, s.maglev.size(), seed);
                Some((s.name, recipe, s.maglev))
            })
            .collect();
        Prepared { tables }
    }

    /// How many tables it holds.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}
