//! FullNAT's local ports in `status` and `stats`: how many of each worker's share of
//! `[global.fullnat] local_ports` are held on each local address.

use serde::{Deserialize, Serialize};

/// One worker's local ports on one local address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPortsInUse {
    pub worker: usize,
    /// The local address connections to backends leave from.
    pub address: String,
    /// Ports held by a flow, or freed and not yet back in the pool: a FullNAT pair's port
    /// returns when its entries leave the table (up to a second after they expire).
    pub in_use: u32,
    /// The worker's share of the range on this address: the most it can hold at once.
    pub share: u32,
}

/// Rows from the engine's figures (`Engine::local_ports_in_use`: per worker, per address),
/// worker by worker in the order each met its addresses.
pub fn local_ports_in_use(
    per_worker: &[Vec<dataplane::local_ports::InUse>],
) -> Vec<LocalPortsInUse> {
    per_worker
        .iter()
        .enumerate()
        .flat_map(|(worker, pools)| {
            pools.iter().map(move |p| LocalPortsInUse {
                worker,
                address: std::net::IpAddr::from(p.addr).to_string(),
                in_use: p.in_use,
                share: p.share,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::local_ports::InUse;
    use dataplane::snapshot::IpKey;

    #[test]
    fn rows_name_worker_and_address_of_either_family() {
        let v6: std::net::IpAddr = "2001:db8:1::1".parse().unwrap();
        let rows = local_ports_in_use(&[
            vec![InUse {
                addr: IpKey::v4([10, 66, 0, 2]),
                in_use: 3,
                share: 15872,
            }],
            vec![],
            vec![InUse {
                addr: IpKey::from(v6),
                in_use: 0,
                share: 100,
            }],
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].worker, rows[0].address.as_str(), rows[0].in_use),
            (0, "10.66.0.2", 3)
        );
        assert_eq!(
            (rows[1].worker, rows[1].address.as_str(), rows[1].share),
            (2, "2001:db8:1::1", 100)
        );
    }
}
