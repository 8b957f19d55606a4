//! Metrics requests: routing any bytes never panics; `complete` agrees with the route; a
//! routed request is answered with a well-formed HTTP/1.1 response whose Content-Length is
//! its body's (none for HEAD), and only GET or HEAD of /metrics gets the page.
#![no_main]

use fulcrum::http::{MAX_HEAD, Route, complete, respond, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = route(data);
    assert_eq!(complete(data), r != Route::Incomplete);
    if r == Route::Incomplete {
        assert!(data.len() <= MAX_HEAD);
        return;
    }
    if let Route::Metrics { .. } = r {
        // httparse skips empty lines before the request line.
        let start = data
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(0);
        let line = &data[start..];
        assert!(line.starts_with(b"GET ") || line.starts_with(b"HEAD "));
    }
    let page = "fulcrum_up 1\n";
    let out = respond(r, || page.to_string());
    let text = std::str::from_utf8(&out).expect("ASCII answer");
    assert!(text.starts_with("HTTP/1.1 "));
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a number");
    match r {
        Route::Metrics { head: true } => assert!(body.is_empty() && len == page.len()),
        _ => assert_eq!(len, body.len()),
    }
});
