//! Authorization cost: allowing 10 000 MACs with timeouts through netlink batches vs running
//! `nft add element` once per MAC (the openNDS way), in the same run, plus the time to restore
//! 10 000 sessions with a full table install, and the time to read the traffic counters of
//! 5 000 paid devices. Needs root; run through `scripts/bench`, which gives it a throwaway
//! network namespace.

use std::process::Command;
use std::time::{Duration, Instant};

use wifipos::firewall::netlink::NetlinkFirewall;
use wifipos::firewall::{Firewall, Ruleset};
use wifipos::mac::Mac;

fn macs(n: u32, tag: u8) -> Vec<(Mac, Duration)> {
    (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            (
                Mac([0x06, tag, b[0], b[1], b[2], b[3]]),
                Duration::from_secs(3600),
            )
        })
        .collect()
}

fn main() {
    let rules = Ruleset {
        guest_iface: "br-guest".into(),
        portal_port: 2050,
        https_port: None,
        trusted: vec![],
        blocked: vec![],
        garden: vec![],
    };
    // The guest interface, so the download counting chain has its device (best effort: a
    // kernel from 6.16 on takes the chain without it too).
    let _ = Command::new("ip")
        .args(["link", "add", "br-guest", "type", "bridge"])
        .status();
    let mut fw = NetlinkFirewall::new();
    fw.install(&rules, &[])
        .expect("install (run as root in a namespace: scripts/bench)");

    let batch = macs(10_000, 1);
    let t = Instant::now();
    fw.allow(&batch).unwrap();
    let netlink = t.elapsed();
    assert_eq!(fw.list_allowed().unwrap().len(), 10_000);

    // The same 10 000 again: every one is present, so each timeout is refreshed.
    let t = Instant::now();
    fw.allow(&batch).unwrap();
    let refresh = t.elapsed();
    let t = Instant::now();
    let all: Vec<Mac> = batch.iter().map(|(m, _)| *m).collect();
    fw.remove(&all).unwrap();
    let remove = t.elapsed();
    assert!(fw.list_allowed().unwrap().is_empty());
    fw.allow(&batch).unwrap();

    let sample = macs(200, 2);
    let t = Instant::now();
    for (m, _) in &sample {
        let elem = format!("{{ {m} timeout 3600s }}");
        let st = Command::new("nft")
            .args(["add", "element", "inet", "wifipos", "allowed", &elem])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let per_nft = t.elapsed() / sample.len() as u32;
    let per_netlink = netlink / batch.len() as u32;

    let t = Instant::now();
    fw.install(&rules, &macs(10_000, 3)).unwrap();
    let restore = t.elapsed();

    println!(
        "firewall: allow 10 000 MACs in netlink batches   {:>9.1} ms  ({:.2} µs per MAC)",
        netlink.as_secs_f64() * 1e3,
        per_netlink.as_secs_f64() * 1e6
    );
    println!(
        "firewall: refresh the same 10 000 (all present)  {:>9.1} ms; remove them {:.1} ms",
        refresh.as_secs_f64() * 1e3,
        remove.as_secs_f64() * 1e3
    );
    println!(
        "firewall: `nft add element` per MAC (200 sampled) {:>9.2} ms per MAC",
        per_nft.as_secs_f64() * 1e3
    );
    println!(
        "firewall: netlink is {:.0}x cheaper per MAC",
        per_nft.as_secs_f64() / per_netlink.as_secs_f64()
    );
    println!(
        "firewall: restore = table install with 10 000 sessions {:>6.1} ms",
        restore.as_secs_f64() * 1e3
    );

    // Reading what 5 000 paid devices used: one dump of `up`, one of `down`.
    let paid = macs(5_000, 4);
    fw.install(&rules, &paid).unwrap();
    let runs: u32 = 20;
    let t = Instant::now();
    for _ in 0..runs {
        assert_eq!(fw.usage().unwrap().len(), 5_000);
    }
    let read = t.elapsed() / runs;
    println!(
        "firewall: read the traffic counters of 5 000 devices {:>6.2} ms per full read ({}, mean of {runs})",
        read.as_secs_f64() * 1e3,
        if fw.counts_downloads() {
            "upload and download"
        } else {
            "upload only: no egress hook"
        }
    );
}
