//! Who holds the portal's connections, and who has to let go of one.
//!
//! Owns: the connection caps — per client address, per *group* (an IPv4 address, or an IPv6
//! /64, since one phone can hold any number of addresses in its prefix) and in total — and fair
//! eviction: when a cap is reached, a newcomer that holds fewer connections than the heaviest
//! holder takes over that holder's oldest connection instead of being refused. A guest with
//! many addresses thus cannot keep others out; it only loses its own connections.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use tokio::task::AbortHandle;

/// The group an address counts in: itself for IPv4, its /64 for IPv6.
pub fn group_of(ip: IpAddr) -> IpAddr {
    super::limiter::source_key(ip)
}

struct Conn {
    id: u64,
    ip: IpAddr,
    abort: Option<AbortHandle>,
}

/// Open connections by address and group.
pub struct Conns {
    max_total: usize,
    per_addr: usize,
    per_group: usize,
    total: usize,
    next_id: u64,
    addrs: HashMap<IpAddr, usize>,
    groups: HashMap<IpAddr, VecDeque<Conn>>,
    /// Connections that gave way, to stop once the table is no longer borrowed.
    evicted: Vec<AbortHandle>,
}

impl Conns {
    pub fn new(max_total: usize, per_addr: usize, per_group: usize) -> Conns {
        Conns {
            max_total: max_total.max(1),
            per_addr: per_addr.max(1),
            per_group: per_group.max(1),
            total: 0,
            next_id: 0,
            addrs: HashMap::new(),
            groups: HashMap::new(),
            evicted: Vec::new(),
        }
    }

    /// Admits a connection from `ip`, evicting another holder's oldest connection if a group or
    /// total cap is reached and that holder is heavier; `None` if it must be refused. The
    /// caller attaches the task with [`Conns::attach`] and calls [`Conns::release`] when done.
    pub fn admit(&mut self, ip: IpAddr) -> Option<u64> {
        let mine = self.addrs.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_addr {
            return None;
        }
        let group = group_of(ip);
        let in_group = self.groups.get(&group).map_or(0, VecDeque::len);
        if in_group >= self.per_group {
            // Within the group (one /64): the heaviest address gives way, if heavier.
            let heaviest = self.groups.get(&group).and_then(|q| {
                q.iter()
                    .map(|c| (self.addrs.get(&c.ip).copied().unwrap_or(0), c.ip))
                    .max()
            });
            match heaviest {
                Some((n, victim)) if n > mine + 1 => self.evict(group, Some(victim)),
                _ => return None,
            }
        }
        if self.total >= self.max_total {
            let in_group = self.groups.get(&group).map_or(0, VecDeque::len);
            let heaviest = self
                .groups
                .iter()
                .map(|(g, q)| (q.len(), *g))
                .max()
                .filter(|(n, _)| *n > in_group + 1);
            match heaviest {
                Some((_, victim)) => self.evict(victim, None),
                None => return None,
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.total += 1;
        *self.addrs.entry(ip).or_insert(0) += 1;
        self.groups.entry(group).or_default().push_back(Conn {
            id,
            ip,
            abort: None,
        });
        Some(id)
    }

    /// Remembers how to stop connection `id` if it has to give way.
    pub fn attach(&mut self, ip: IpAddr, id: u64, abort: AbortHandle) {
        if let Some(c) = self
            .groups
            .get_mut(&group_of(ip))
            .and_then(|q| q.iter_mut().find(|c| c.id == id))
        {
            c.abort = Some(abort);
        }
    }

    /// Connection `id` from `ip` has ended (or was evicted: then nothing is left to do).
    pub fn release(&mut self, ip: IpAddr, id: u64) {
        let group = group_of(ip);
        let Some(q) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(pos) = q.iter().position(|c| c.id == id) else {
            return;
        };
        q.remove(pos);
        self.forget(group, ip);
    }

    /// Stops the oldest connection in `group` (of address `only`, if given).
    fn evict(&mut self, group: IpAddr, only: Option<IpAddr>) {
        let Some(q) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(pos) = q.iter().position(|c| only.is_none_or(|ip| c.ip == ip)) else {
            return;
        };
        if let Some(c) = q.remove(pos) {
            if let Some(a) = c.abort {
                self.evicted.push(a);
            }
            self.forget(group, c.ip);
        }
    }

    fn forget(&mut self, group: IpAddr, ip: IpAddr) {
        self.total -= 1;
        if self.groups.get(&group).is_some_and(VecDeque::is_empty) {
            self.groups.remove(&group);
        }
        if let Some(n) = self.addrs.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.addrs.remove(&ip);
            }
        }
    }

    /// The connections evicted since the last call: the caller aborts them (their tasks'
    /// cleanup calls [`Conns::release`], which must not run while the table is borrowed).
    pub fn take_evicted(&mut self) -> Vec<AbortHandle> {
        std::mem::take(&mut self.evicted)
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(i: u16) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::new(0xfd20, 0, 0, 0, 0, 0, 1, i))
    }

    fn v4(i: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 20, 0, i))
    }

    #[test]
    fn one_64_holds_at_most_its_cap_and_others_still_get_in() {
        let mut c = Conns::new(100, 16, 40);
        for i in 0..40 {
            for _ in 0..16 {
                let _ = c.admit(v6(i));
            }
        }
        assert_eq!(c.total(), 40, "the /64 is capped");
        assert!(c.admit(v4(10)).is_some(), "an IPv4 phone gets in");
        // A new address in the same /64 takes a connection from its heaviest address.
        let mut c = Conns::new(100, 16, 32);
        for _ in 0..16 {
            c.admit(v6(1)).unwrap();
            c.admit(v6(2)).unwrap();
        }
        assert!(c.admit(v6(3)).is_some());
        assert_eq!(c.total(), 32);
    }

    #[test]
    fn the_total_cap_evicts_the_heaviest_group_and_releases_balance() {
        let mut c = Conns::new(64, 16, 64);
        let mut ids = Vec::new();
        for i in 0..4 {
            for _ in 0..16 {
                ids.push((v4(i), c.admit(v4(i)).unwrap()));
            }
        }
        assert_eq!(c.total(), 64);
        let newcomer = c.admit(v4(50)).expect("a newcomer takes a slot");
        assert_eq!(c.total(), 64);
        for (ip, id) in ids {
            c.release(ip, id);
        }
        c.release(v4(50), newcomer);
        assert_eq!(c.total(), 0);
        assert!(c.addrs.is_empty() && c.groups.is_empty());
    }

    #[test]
    fn equals_do_not_evict_each_other() {
        let mut c = Conns::new(4, 16, 64);
        for i in 0..4 {
            c.admit(v4(i)).unwrap();
        }
        assert!(c.admit(v4(9)).is_none());
    }
}
