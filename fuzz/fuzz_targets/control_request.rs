//! Control requests: `decode_request` on any bytes never panics; a request it accepts
//! encodes to one line that decodes to the same request; a `which` flow is parsed without
//! panicking, and a parsed flow's canonical text parses to the same flow.
#![no_main]

use fulcrum::api::{Request, decode_request, encode};
use fulcrum::flowspec::parse_flow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = decode_request(data) else {
        return;
    };
    let line = encode(&req);
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(decode_request(&line).expect("own encoding"), req);
    if let Request::Which { flow } = &req
        && let Ok(f) = parse_flow(flow)
    {
        assert_eq!(parse_flow(&f.text).expect("canonical text"), f);
    }
});
