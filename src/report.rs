//! Printing a stopped engine's counters: a table for people, JSON for scripts and tests.

use dataplane::engine::Report;
use dataplane::stats::Counters;
use dataplane::verdict::DropReason;
use fulcrum::api::CounterSet;
use serde::Serialize;
use serde_json::{Value, json};

/// A worker's final counters (or their totals), as `ctl stats` names them, and whether its
/// books balance.
#[derive(Serialize)]
struct FinalCounters {
    #[serde(flatten)]
    counters: CounterSet,
    balanced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<usize>,
}

fn counters_json(c: &Counters, worker: Option<usize>) -> Value {
    serde_json::to_value(FinalCounters {
        counters: CounterSet::new(c),
        balanced: c.balanced(),
        worker,
    })
    .unwrap_or_default()
}

fn mac(m: [u8; 6]) -> String {
    conf::MacAddr(m).to_string()
}

pub fn to_json(r: &Report) -> Value {
    let workers: Vec<Value> = r
        .workers
        .iter()
        .enumerate()
        .map(|(i, c)| counters_json(c, Some(i)))
        .collect();
    let ports: Vec<Value> = r
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({ "name": p.name, "device": p.device, "mac": mac(p.mac) });
            if let Some(s) = &p.stats {
                let o = v.as_object_mut().expect("object");
                o.insert("ipackets".into(), json!(s.ipackets));
                o.insert("opackets".into(), json!(s.opackets));
                o.insert("ibytes".into(), json!(s.ibytes));
                o.insert("obytes".into(), json!(s.obytes));
                o.insert("imissed".into(), json!(s.imissed));
                o.insert("ierrors".into(), json!(s.ierrors));
                o.insert("oerrors".into(), json!(s.oerrors));
                o.insert("rx_nombuf".into(), json!(s.rx_nombuf));
            }
            v
        })
        .collect();
    json!({
        "elapsed_s": r.elapsed.as_secs_f64(),
        "workers": workers,
        "totals": counters_json(&r.totals(), None),
        "ports": ports,
        "mempool": { "in_use": r.mempool_in_use, "capacity": r.mempool_capacity },
    })
}

pub fn print(r: &Report, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(r)).expect("json")
        );
        return;
    }
    let t = r.totals();
    println!(
        "{:<18}{}",
        "counter",
        (0..r.workers.len())
            .map(|i| format!("{:>14}", format!("worker{i}")))
            .collect::<String>()
            + &format!("{:>14}", "total")
    );
    let row = |name: &str, f: &dyn Fn(&Counters) -> u64| {
        let mut line = format!("{name:<18}");
        for w in &r.workers {
            line += &format!("{:>14}", f(w));
        }
        line += &format!("{:>14}", f(&t));
        println!("{line}");
    };
    for (i, (name, _)) in t.fields().iter().enumerate() {
        row(name, &|c: &Counters| c.fields()[i].1);
    }
    for reason in DropReason::ALL {
        if t.drops[*reason as usize] > 0 {
            row(&format!("drop:{}", reason.name()), &|c: &Counters| {
                c.drops[*reason as usize]
            });
        }
    }
    println!(
        "every packet accounted: {}",
        if r.workers.iter().all(|w| w.balanced()) || t.balanced() {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "mbufs in use after stop: {} of {}",
        r.mempool_in_use, r.mempool_capacity
    );
    for p in &r.ports {
        match &p.stats {
            Some(s) => println!(
                "port {} ({}, {}): rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}, rx errors {}, tx errors {}, no mbuf {}",
                p.name,
                p.device,
                mac(p.mac),
                s.ipackets,
                s.ibytes,
                s.opackets,
                s.obytes,
                s.imissed,
                s.ierrors,
                s.oerrors,
                s.rx_nombuf
            ),
            None => println!("port {} ({}): no stats", p.name, p.device),
        }
    }
}
