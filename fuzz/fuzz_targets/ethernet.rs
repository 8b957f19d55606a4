//! Ethernet: `parse_l2` on anything, and every getter of a checked frame.
#![no_main]

use dataplane::wire::{self, EthernetFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l2) = wire::parse_l2(data) {
        assert!(l2.vlan_depth <= wire::ethernet::MAX_VLAN_DEPTH);
        assert_eq!(l2.l3_offset, 14 + 4 * usize::from(l2.vlan_depth));
        assert!(l2.l3_offset <= data.len());
        assert_eq!(l2.vlan.is_some(), l2.vlan_depth > 0);
        assert_ne!(l2.ethertype, wire::ETHERTYPE_VLAN);
        assert_ne!(l2.ethertype, wire::ETHERTYPE_QINQ);
    }
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype());
        assert_eq!(f.payload().len(), data.len() - 14);
        let mut copy = data.to_vec();
        let mut g = EthernetFrame::new_checked(&mut copy[..]).expect("same bytes");
        g.set_dst_addr(f.src_addr());
        g.set_src_addr(f.dst_addr());
        g.set_ethertype(!f.ethertype());
        g.payload_mut();
        assert_eq!(g.ethertype(), !f.ethertype());
        assert_eq!(f.into_payload().len(), data.len() - 14);
    }
});
