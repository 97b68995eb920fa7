//! Clones on the guest bridge: the same MAC answering from two bridge ports at once (a copy of a
//! paid device's address). Reads the bridge's forwarding database with one rtnetlink dump
//! (`RTM_GETNEIGH`, family `AF_BRIDGE`) each tick and notices a MAC whose port keeps changing.
//!
//! Owns: the dump and the [`CloneWatch`] detector. Decides nothing: the daemon logs each clone
//! (`mac_clone`) and `status` shows it; blocking is the admin's choice (`wifiposd block MAC`).

use std::collections::{HashMap, VecDeque};

use crate::mac::Mac;

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const AF_BRIDGE: u8 = 7;
const NDA_LLADDR: u16 = 2;
const NDA_MASTER: u16 = 9;
/// NUD_PERMANENT: the bridge's own addresses.
const NUD_PERMANENT: u16 = 0x80;

/// Moves between ports within [`WINDOW_S`] that make a clone.
pub const MOVES: usize = 3;
pub const WINDOW_S: i64 = 60;
/// A clone is reported again after this long at the earliest.
pub const REPORT_EVERY_S: i64 = 600;
/// MACs tracked at most (the map is cleared when full: bounded whatever guests invent).
const MAX_TRACKED: usize = 8192;

/// `(MAC, port ifindex)` of every learned entry on the bridge `bridge_ifindex`.
pub fn dump(bridge_ifindex: u32) -> std::io::Result<Vec<(Mac, u32)>> {
    let sock = mnl::Socket::new(mnl::Bus::Route)?;
    // ndmsg (12 bytes): the bridge family, everything else zero.
    let mut ndmsg = [0u8; 12];
    ndmsg[0] = AF_BRIDGE;
    let req = crate::nl::message(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 1, &ndmsg);
    let mut out = Vec::new();
    crate::nl::dump(&sock, &req, |kind, body| {
        if kind == RTM_NEWNEIGH {
            out.extend(parse(body, bridge_ifindex));
        }
    })?;
    Ok(out)
}

/// One `ndmsg`: the MAC and port if it is a learned entry of the bridge.
fn parse(m: &[u8], bridge: u32) -> Option<(Mac, u32)> {
    if m.len() < 12 {
        return None;
    }
    let port = u32::from_ne_bytes(m[4..8].try_into().ok()?);
    let state = u16::from_ne_bytes([m[8], m[9]]);
    if state & NUD_PERMANENT != 0 {
        return None;
    }
    let (mut mac, mut master) = (None, None);
    let mut attrs = &m[12..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let data = &attrs[4..alen];
        match kind {
            NDA_LLADDR if data.len() == 6 => mac = data.try_into().ok().map(Mac),
            NDA_MASTER if data.len() == 4 => master = data.try_into().ok().map(u32::from_ne_bytes),
            _ => {}
        }
        attrs = attrs.get((alen + 3) & !3..).unwrap_or(&[]);
    }
    (master == Some(bridge)).then_some(())?;
    Some((mac?, port))
}

/// A MAC seen on more than one port, moving back and forth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clone {
    pub mac: Mac,
    /// Port ifindexes it was seen on lately.
    pub ports: Vec<u32>,
}

#[derive(Default)]
struct Track {
    port: u32,
    moves: VecDeque<i64>,
    ports: Vec<u32>,
    reported: Option<i64>,
}

/// Remembers each MAC's port between dumps and reports MACs that move [`MOVES`] times within
/// [`WINDOW_S`] (once per [`REPORT_EVERY_S`]).
#[derive(Default)]
pub struct CloneWatch {
    seen: HashMap<Mac, Track>,
}

impl CloneWatch {
    pub fn see(&mut self, entries: &[(Mac, u32)], now: i64) -> Vec<Clone> {
        if self.seen.len() > MAX_TRACKED {
            self.seen.clear();
        }
        let mut out = Vec::new();
        for (mac, port) in entries {
            let t = self.seen.entry(*mac).or_insert_with(|| Track {
                port: *port,
                ports: vec![*port],
                ..Track::default()
            });
            if t.port != *port {
                t.port = *port;
                t.moves.push_back(now);
                if !t.ports.contains(port) && t.ports.len() < 8 {
                    t.ports.push(*port);
                }
            }
            while t.moves.front().is_some_and(|at| now - at > WINDOW_S) {
                t.moves.pop_front();
            }
            let due = t.reported.is_none_or(|at| now - at >= REPORT_EVERY_S);
            if t.moves.len() >= MOVES && due {
                t.reported = Some(now);
                out.push(Clone {
                    mac: *mac,
                    ports: t.ports.clone(),
                });
            }
        }
        out
    }
}

/// The interface name of `ifindex` (or the number when it has none).
pub fn port_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has room for IF_NAMESIZE bytes, as if_indextoname requires; it writes a
    // NUL-terminated name or returns null.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return ifindex.to_string();
    }
    // SAFETY: on success `buf` holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The ifindex of the interface `name`, if there is one.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_that_keeps_changing_ports_is_a_clone_reported_once() {
        let (paid, other) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let mut w = CloneWatch::default();
        assert!(w.see(&[(paid, 5), (other, 6)], 0).is_empty());
        assert!(w.see(&[(paid, 7)], 1).is_empty());
        assert!(w.see(&[(paid, 5)], 2).is_empty());
        let c = w.see(&[(paid, 7), (other, 6)], 3);
        assert_eq!(
            c,
            vec![Clone {
                mac: paid,
                ports: vec![5, 7]
            }]
        );
        assert!(w.see(&[(paid, 5)], 4).is_empty(), "reported once");
        // A device that roams once is no clone.
        let mut w = CloneWatch::default();
        for (i, p) in [5, 7, 7, 7].iter().enumerate() {
            assert!(w.see(&[(paid, *p)], i as i64 * 100).is_empty());
        }
    }

    #[test]
    fn only_learned_entries_of_the_bridge_count() {
        let mut m = vec![7, 0, 0, 0, 5, 0, 0, 0, 0x02, 0, 0, 0]; // ifindex 5, REACHABLE
        m.extend_from_slice(&[10, 0, 2, 0, 2, 0, 0, 0, 0, 1, 0, 0]); // NDA_LLADDR
        m.extend_from_slice(&[8, 0, 9, 0, 3, 0, 0, 0]); // NDA_MASTER 3
        assert_eq!(parse(&m, 3), Some((Mac([2, 0, 0, 0, 0, 1]), 5)));
        assert_eq!(parse(&m, 4), None);
        m[8] = 0x80; // permanent: the bridge's own address
        assert_eq!(parse(&m, 3), None);
        assert_eq!(parse(&m[..5], 3), None);
    }
}
