//! Ending one device's connections among many: `conntrack::end_from` dumps the whole conntrack
//! table (both families) and deletes the device's entries one acknowledged request each. Fills
//! a throwaway network namespace's table with N UDP entries over ctnetlink (N = 1 000, 10 000,
//! 50 000; the device holds 10 of them), then times the teardown and a bare dump. Needs root;
//! `scripts/bench-conntrack` runs it under `unshare -n`. Prints numbers, asserts none.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use wifipos::{conntrack, nl};

const CT_NEW: u16 = 1 << 8;
const NLM_F_CREATE: u16 = 0x400;
const NESTED: u16 = 0x8000;

fn tuple(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = Vec::new();
    nl::push_attr(&mut ip, 1, &src.octets());
    nl::push_attr(&mut ip, 2, &dst.octets());
    let mut proto = Vec::new();
    nl::push_attr(&mut proto, 1, &[17]);
    nl::push_attr(&mut proto, 2, &sport.to_be_bytes());
    nl::push_attr(&mut proto, 3, &dport.to_be_bytes());
    let mut t = Vec::new();
    nl::push_attr(&mut t, 1 | NESTED, &ip);
    nl::push_attr(&mut t, 2 | NESTED, &proto);
    t
}

/// Creates one UDP entry src:sport → dst:53 with a 10-minute timeout.
fn create(sock: &mnl::Socket, src: Ipv4Addr, sport: u16) {
    let dst = Ipv4Addr::new(10, 99, 0, 2);
    let mut body = vec![2u8, 0, 0, 0];
    nl::push_attr(&mut body, 1 | NESTED, &tuple(src, dst, sport, 53));
    nl::push_attr(&mut body, 2 | NESTED, &tuple(dst, src, 53, sport));
    nl::push_attr(&mut body, 7, &600u32.to_be_bytes());
    let req = nl::message(
        CT_NEW,
        nl::NLM_F_REQUEST | nl::NLM_F_ACK | NLM_F_CREATE,
        1,
        &body,
    );
    if let Err(e) = nl::request(sock, &req) {
        if e.raw_os_error() != Some(17) {
            panic!("cannot create a conntrack entry (root in a network namespace?): {e}");
        }
    }
}

fn median(mut t: Vec<Duration>) -> f64 {
    t.sort();
    t[t.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let sock = mnl::Socket::new(mnl::Bus::Netfilter).expect("netlink socket");
    let device = Ipv4Addr::new(10, 20, 0, 10);
    let ips: HashSet<IpAddr> = [IpAddr::V4(device)].into();
    let mut filled = 0u32;
    println!("conntrack teardown of one device (10 entries) among N entries, median of 7:");
    for n in [1_000u32, 10_000, 50_000] {
        while filled < n {
            let i = filled;
            let src = Ipv4Addr::new(10, 21, (i / 60_000) as u8, ((i / 250) % 240) as u8 + 1);
            create(&sock, src, 1024 + (i % 60_000) as u16);
            filled += 1;
        }
        let (mut end, mut dump) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            for p in 0..10 {
                create(&sock, device, 40_000 + p);
            }
            let t = Instant::now();
            let gone = conntrack::end_from(&ips).expect("teardown");
            end.push(t.elapsed());
            assert_eq!(gone, 10);
            let t = Instant::now();
            let all = conntrack::list().expect("dump");
            dump.push(t.elapsed());
            assert!(all.len() >= n as usize);
        }
        println!(
            "  N = {n:>6}: end_from {:>8.2} ms, bare dump {:>8.2} ms",
            median(end),
            median(dump)
        );
    }
}
