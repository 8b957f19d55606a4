//! The end-to-end checker is itself tested: fed a wrong outcome (a response from the wrong
//! backend, a failed request, a missing RST, a slow RST, skewed shares) it fails.

use std::collections::HashMap;

use testkit::outcome::*;

fn rec(src: &str, sport: u16, backend: Option<&str>, error: Option<&str>, ms: f64) -> Record {
    Record {
        src: src.into(),
        sport,
        backend: backend.map(Into::into),
        error: error.map(Into::into),
        ms,
    }
}

fn expected() -> HashMap<(String, u16), String> {
    [
        (("10.0.0.1".to_string(), 1000), "b1".to_string()),
        (("10.0.0.1".to_string(), 1001), "b2".to_string()),
    ]
    .into_iter()
    .collect()
}

#[test]
fn placement_accepts_the_right_backends() {
    let r = vec![
        rec("10.0.0.1", 1000, Some("b1"), None, 1.0),
        rec("10.0.0.1", 1001, Some("b2"), None, 1.0),
    ];
    assert!(check_placement(&r, &expected()).is_ok());
}

#[test]
fn placement_rejects_a_response_from_the_wrong_backend() {
    let r = vec![
        rec("10.0.0.1", 1000, Some("b1"), None, 1.0),
        rec("10.0.0.1", 1001, Some("b1"), None, 1.0),
    ];
    let e = check_placement(&r, &expected()).unwrap_err();
    assert!(e.contains("answered by b1, config says b2"), "{e}");
}

#[test]
fn placement_rejects_a_failed_request_and_an_empty_run() {
    let r = vec![rec("10.0.0.1", 1000, None, Some("timeout"), 3000.0)];
    assert!(check_placement(&r, &expected()).is_err());
    assert!(check_placement(&[], &expected()).is_err());
}

#[test]
fn refusal_requires_a_fast_rst_for_every_request() {
    let good = vec![rec("10.0.0.1", 1, None, Some("refused"), 2.0)];
    assert!(check_refused(&good, 1000.0).is_ok());
    let answered = vec![rec("10.0.0.1", 1, Some("b1"), None, 2.0)];
    assert!(
        check_refused(&answered, 1000.0).is_err(),
        "a response instead of a RST must fail"
    );
    let timeout = vec![rec("10.0.0.1", 1, None, Some("timeout"), 3000.0)];
    assert!(
        check_refused(&timeout, 1000.0).is_err(),
        "a missing RST (timeout) must fail"
    );
    let slow = vec![rec("10.0.0.1", 1, None, Some("refused"), 1500.0)];
    assert!(
        check_refused(&slow, 1000.0).is_err(),
        "a RST after a second must fail"
    );
}

#[test]
fn shares_follow_weights_or_fail() {
    let mut r = Vec::new();
    for i in 0..100 {
        r.push(rec(
            "10.0.0.1",
            i,
            Some(if i % 4 == 0 { "b1" } else { "b2" }),
            None,
            1.0,
        ));
    }
    assert!(check_shares(&r, &[("b1", 1.0), ("b2", 3.0)], 0.02).is_ok());
    assert!(check_shares(&r, &[("b1", 1.0), ("b2", 1.0)], 0.05).is_err());
    r.push(rec("10.0.0.1", 999, Some("b9"), None, 1.0));
    assert!(
        check_shares(&r, &[("b1", 1.0), ("b2", 3.0)], 0.05).is_err(),
        "unknown backend must fail"
    );
}

#[test]
fn by_backend_puts_a_failure_on_the_backend_its_flow_goes_to() {
    let requests = vec![
        rec("10.0.0.1", 1000, Some("b1"), None, 2.0),
        // Failed: no answer says where it went; the placement does.
        rec("10.0.0.1", 1001, None, Some("timeout"), 5000.0),
        // Failed after an answer: placed by its flow as well.
        rec("10.0.0.1", 1000, Some("b1"), Some("bad_status"), 3.0),
        rec("10.0.0.9", 1, None, Some("refused"), 1.0),
    ];
    let streams = vec![
        rec("10.0.0.1", 1001, Some("b2"), None, 0.0),
        rec("10.0.0.1", 1000, None, Some("refused"), 0.0),
    ];
    let per = by_backend(&requests, &streams, &expected());
    let b1 = &per["b1"];
    assert_eq!(
        (b1.requests, b1.errors, b1.streams, b1.broken),
        (2, 1, 1, 1)
    );
    assert_eq!(b1.max_ms, 3.0);
    let b2 = &per["b2"];
    assert_eq!(
        (b2.requests, b2.errors, b2.streams, b2.broken),
        (1, 1, 1, 0)
    );
    assert_eq!(b2.max_ms, 5000.0);
    assert_eq!(
        per["?"].errors, 1,
        "a failure nothing places is still counted"
    );
}
