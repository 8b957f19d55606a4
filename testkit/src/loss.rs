//! Packet loss on purpose where the kernel has no netem: nftables rules loaded into a
//! namespace (a router's forward hook, say), their named counters read back, and a node's
//! TCP counters (`nstat`), so that a test can show what the loss made its kernels do
//! (retransmissions, SACK recoveries, SACK blocks discarded as invalid).

use std::collections::HashMap;

use crate::net::Net;

impl Net {
    /// Loads `ruleset` (nft syntax) into `node`'s nftables; it goes with the namespace.
    pub fn nft(&self, node: &str, ruleset: &str) {
        let file = self.dir.join(format!("{node}.nft"));
        std::fs::write(&file, ruleset).expect("nft file");
        self.exec(node, &["nft", "-f", file.to_str().expect("utf-8 path")]);
    }

    /// Removes the nftables table `inet TABLE` from `node`.
    pub fn nft_delete(&self, node: &str, table: &str) {
        self.exec(node, &["nft", "delete", "table", "inet", table]);
    }

    /// Packets the named counter `counter` of table `inet TABLE` in `node` has counted.
    pub fn nft_counter(&self, node: &str, table: &str, counter: &str) -> u64 {
        let out = self.exec(
            node,
            &["nft", "-j", "list", "counter", "inet", table, counter],
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j");
        v["nftables"]
            .as_array()
            .and_then(|a| a.iter().find_map(|o| o["counter"]["packets"].as_u64()))
            .unwrap_or_else(|| panic!("no counter {counter} in {out}"))
    }

    /// `node`'s kernel TCP counters (`nstat`'s absolute values, its history left alone):
    /// `TcpRetransSegs`, `TcpExtTCPSackRecovery`, `TcpExtTCPSACKDiscard`, ...
    pub fn tcp_counters(&self, node: &str) -> HashMap<String, u64> {
        self.exec(node, &["nstat", "-asz"])
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?;
                let value = f.next()?.parse().ok()?;
                Some((name.to_owned(), value))
            })
            .collect()
    }
}
