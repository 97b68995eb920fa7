//! The firewall: one nftables table of our own (`inet wifipos`) whose `allowed` set holds paid
//! devices' MACs with a per-element timeout, so the kernel ends each session on time even if
//! the daemon is dead; and a small `netdev wifipos` table on the guest interface's egress hook
//! that, with the `up` set of the first, counts each paid device's traffic in the kernel.
//!
//! Owns: the ruleset as data ([`ruleset`], pure), the [`Firewall`] trait, its netlink
//! implementation ([`netlink::NetlinkFirewall`], the whole table and every element over
//! nftnl/mnl batches; [`usage`] reads the counters) and an in-memory one for tests of callers
//! ([`MemoryFirewall`]).
//! Does not own: other tables (fw4's `inet fw4` is never touched), vouchers, SQL or HTTP:
//! callers say which MACs get how long, and rebuild from their store when [`Firewall::check`]
//! says the table was flushed or changed.

mod exprs;
pub mod netlink;
pub mod ruleset;
pub mod sources;
pub mod usage;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use self::ruleset::ruleset_script;
pub use crate::mac::Mac;

pub const TABLE: &str = "wifipos";
pub const SET_ALLOWED: &str = "allowed";
pub const CHAINS: [&str; 3] = ["prerouting", "forward", "input"];

/// What the ruleset depends on: the config (guest interface, portal port) and the standing
/// lists (trusted, blocked, walled garden). Paid devices are passed separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The guest network's device, e.g. `br-guest`.
    pub guest_iface: String,
    pub portal_port: u16,
    /// The HTTPS portal's port, when TLS is on: let in and vouched for like `portal_port`.
    pub https_port: Option<u16>,
    /// Staff devices: always through, never asked.
    pub trusted: Vec<Mac>,
    /// Devices that get nothing, even while paid.
    pub blocked: Vec<Mac>,
    /// Walled garden: reachable before paying, `(address, prefix length)`.
    pub garden: Vec<(IpAddr, u8)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The kernel refused a netlink request (the whole batch was rolled back).
    #[error(
        "the kernel refused to {op}: {source} (is this run as root, with nf_tables available?)"
    )]
    Kernel {
        op: &'static str,
        source: std::io::Error,
    },
    /// Installing the table did not leave it as built.
    #[error("cannot install the nftables table inet wifipos: {0}")]
    Install(String),
    /// The guest interface name cannot be used in a rule.
    #[error("'{0}' is not a usable interface name (1-15 letters, digits, '-', '_', '.', '@')")]
    BadInterface(String),
    /// A walled-garden entry is not an address prefix.
    #[error("'{0}' is not a usable walled-garden prefix")]
    BadPrefix(String),
}

impl FirewallError {
    /// The kernel said "no such file or directory": our table, chain or set is not there.
    pub fn is_missing(&self) -> bool {
        matches!(self, FirewallError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    }
}

/// Whether our table is as we built it (coarse, for callers that only rebuild).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Intact,
    /// The table is gone or not as built (e.g. `nft flush ruleset`): rebuild it.
    Missing,
}

/// What [`Firewall::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableHealth {
    Intact,
    /// No `inet wifipos` table at all (`nft flush ruleset`, `nft delete table`).
    Missing,
    /// The table is there but not as we built it; says what differs.
    Changed(String),
}

/// What the kernel counted for one paid device since its counting elements were added.
///
/// Upload is counted in the inet forward hook (IP packets the device sent out through the
/// router); download on the guest interface's egress hook (frames the router sent to the
/// device, Ethernet header included, also from the router itself: DNS answers, the portal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub up_bytes: u64,
    pub up_packets: u64,
    pub down_bytes: u64,
    pub down_packets: u64,
}

/// Programs the kernel. All lists are applied in batches, never one request per MAC.
///
/// Traffic counting: every MAC given to [`Firewall::allow`] or [`Firewall::install`] with
/// time left is counted from then on, until [`Firewall::remove`] (or a rebuild). When the
/// kernel times a MAC out of the allowed set, its counters stay: the caller reads them a last
/// time with [`Firewall::usage`] and then calls [`Firewall::remove`] for it.
pub trait Firewall {
    /// Builds (or replaces) the whole table atomically, with `allowed` already in it, so a
    /// re-install never drops a paid device. The allowed MACs are counted from zero.
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError>;
    /// Lets each MAC through for its duration from now, replacing any time it had. A duration
    /// under one second removes the MAC (and its counters). A MAC not yet counted is counted
    /// from zero; one already counted keeps its counters.
    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError>;
    /// Takes MACs out of the allowed set and stops counting them (their counters are gone);
    /// MACs not in it are ignored.
    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError>;
    /// The allowed MACs and the time each has left, sorted by MAC.
    fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError>;
    /// Replaces the trusted set (one batch).
    fn set_trusted(&mut self, macs: &[Mac]) -> Result<(), FirewallError>;
    /// Replaces the blocked set (one batch).
    fn set_blocked(&mut self, macs: &[Mac]) -> Result<(), FirewallError>;
    /// Replaces the walled garden, IPv4 and IPv6 prefixes (one batch).
    fn set_garden(&mut self, prefixes: &[(IpAddr, u8)]) -> Result<(), FirewallError>;
    /// A cheap check that the table is still as built, for the daemon to call periodically.
    fn check(&mut self) -> Result<TableHealth, FirewallError>;
    /// Bytes and packets per counted device (those added by allow/install and not yet removed),
    /// sorted by MAC. Counters restart from zero when the table is rebuilt.
    fn usage(&mut self) -> Result<Vec<(Mac, Usage)>, FirewallError>;
    /// Whether downloads are counted: false where the kernel has no netdev egress hook (before
    /// 5.16, e.g. OpenWrt 23.05) or refused the chain on the guest interface; uploads are
    /// counted all the same, and download counters stay zero.
    fn counts_downloads(&self) -> bool {
        true
    }
    /// [`Firewall::check`] folded to "fine" or "rebuild".
    fn health(&mut self) -> Result<Health, FirewallError> {
        Ok(match self.check()? {
            TableHealth::Intact => Health::Intact,
            TableHealth::Missing | TableHealth::Changed(_) => Health::Missing,
        })
    }
}

/// An in-memory firewall for tests of callers and for `wifiposd serve --dev`: remembers what it
/// was told, with timeouts on a monotonic clock that tests may drive by hand.
#[derive(Debug, Default)]
pub struct MemoryFirewall {
    pub installed: Option<Ruleset>,
    allowed: HashMap<Mac, Instant>,
    /// A hand-driven clock (see [`MemoryFirewall::with_clock`]); the real one when `None`.
    clock: Option<Instant>,
    changed: Option<String>,
    /// Counted MACs and what they "sent" ([`MemoryFirewall::add_usage`]).
    usage: HashMap<Mac, Usage>,
}

impl MemoryFirewall {
    pub fn new() -> MemoryFirewall {
        MemoryFirewall::default()
    }

    /// A firewall whose time stands still at `start` until [`MemoryFirewall::advance`].
    pub fn with_clock(start: Instant) -> MemoryFirewall {
        MemoryFirewall {
            clock: Some(start),
            ..MemoryFirewall::default()
        }
    }

    /// Moves the hand-driven clock on (no effect on a real-clock firewall).
    pub fn advance(&mut self, by: Duration) {
        if let Some(c) = self.clock.as_mut() {
            *c += by;
        }
    }

    fn now(&self) -> Instant {
        self.clock.unwrap_or_else(Instant::now)
    }

    /// Forgets the table, as `nft flush ruleset` would.
    pub fn flush(&mut self) {
        self.installed = None;
        self.allowed.clear();
        self.usage.clear();
    }

    /// Simulates traffic of a counted MAC: `up` bytes sent, `down` bytes received, one packet
    /// each way per call. MACs not counted are ignored, as the kernel would.
    pub fn add_usage(&mut self, mac: Mac, up: u64, down: u64) {
        if let Some(u) = self.usage.get_mut(&mac) {
            u.up_bytes += up;
            u.up_packets += u64::from(up > 0);
            u.down_bytes += down;
            u.down_packets += u64::from(down > 0);
        }
    }

    /// Marks the table as changed from outside, as an admin deleting a rule would.
    pub fn tamper(&mut self, what: &str) {
        self.changed = Some(what.to_owned());
    }

    fn table(&mut self) -> Result<&mut Ruleset, FirewallError> {
        self.installed.as_mut().ok_or(FirewallError::Kernel {
            op: "change the table (it is not installed)",
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        })
    }
}

impl Firewall for MemoryFirewall {
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError> {
        ruleset::rules(rules)?;
        for v4 in [true, false] {
            ruleset::garden_intervals(&rules.garden, v4)?;
        }
        self.installed = Some(rules.clone());
        self.changed = None;
        self.allowed.clear();
        self.usage.clear();
        self.allow(allowed)
    }

    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError> {
        // As in the kernel: no table, no set to add to.
        self.table()?;
        let now = self.now();
        for (m, d) in entries {
            if d.as_secs() >= 1 {
                self.allowed.insert(*m, now + *d);
                self.usage.entry(*m).or_default();
            } else {
                self.allowed.remove(m);
                self.usage.remove(m);
            }
        }
        Ok(())
    }

    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        for m in macs {
            self.allowed.remove(m);
            self.usage.remove(m);
        }
        Ok(())
    }

    fn usage(&mut self) -> Result<Vec<(Mac, Usage)>, FirewallError> {
        self.table()?;
        let mut v: Vec<_> = self.usage.iter().map(|(m, u)| (*m, *u)).collect();
        v.sort_by_key(|(m, _)| *m);
        Ok(v)
    }

    fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError> {
        let now = self.now();
        self.allowed.retain(|_, until| *until > now);
        let mut v: Vec<_> = self
            .allowed
            .iter()
            .map(|(m, until)| (*m, *until - now))
            .collect();
        v.sort();
        Ok(v)
    }

    fn set_trusted(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        self.table()?.trusted = macs.to_vec();
        Ok(())
    }

    fn set_blocked(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        self.table()?.blocked = macs.to_vec();
        Ok(())
    }

    fn set_garden(&mut self, prefixes: &[(IpAddr, u8)]) -> Result<(), FirewallError> {
        for v4 in [true, false] {
            ruleset::garden_intervals(prefixes, v4)?;
        }
        self.table()?.garden = prefixes.to_vec();
        Ok(())
    }

    fn check(&mut self) -> Result<TableHealth, FirewallError> {
        Ok(match (&self.installed, &self.changed) {
            (None, _) => TableHealth::Missing,
            (Some(_), Some(what)) => TableHealth::Changed(what.clone()),
            (Some(_), None) => TableHealth::Intact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_firewall_times_out_entries_on_its_own_clock() {
        let t0 = Instant::now();
        let mut f = MemoryFirewall::with_clock(t0);
        assert_eq!(f.check().unwrap(), TableHealth::Missing);
        assert!(
            f.set_trusted(&[Mac([2, 0, 0, 0, 0, 4])]).is_err(),
            "no table yet"
        );
        let m = Mac([2, 0, 0, 0, 0, 5]);
        f.install(&ruleset::sample(), &[(m, Duration::from_secs(60))])
            .unwrap();
        f.allow(&[(Mac([2, 0, 0, 0, 0, 6]), Duration::from_secs(10))])
            .unwrap();
        f.advance(Duration::from_secs(15));
        assert_eq!(
            f.list_allowed().unwrap(),
            vec![(m, Duration::from_secs(45))]
        );
        f.allow(&[(m, Duration::from_secs(5))]).unwrap();
        assert_eq!(f.list_allowed().unwrap()[0].1, Duration::from_secs(5));
        f.allow(&[(m, Duration::ZERO)]).unwrap();
        assert!(f.list_allowed().unwrap().is_empty());
    }

    #[test]
    fn memory_firewall_counts_from_allow_to_remove_and_keeps_counters_on_extension() {
        let t0 = Instant::now();
        let mut f = MemoryFirewall::with_clock(t0);
        assert!(f.usage().is_err(), "no table yet");
        let (a, b) = (Mac([2, 0, 0, 0, 0, 5]), Mac([2, 0, 0, 0, 0, 6]));
        f.install(&ruleset::sample(), &[(b, Duration::from_secs(60))])
            .unwrap();
        f.allow(&[(a, Duration::from_secs(60))]).unwrap();
        f.add_usage(a, 1000, 5000);
        f.add_usage(Mac([2, 0, 0, 0, 0, 7]), 1, 1);
        let u = Usage {
            up_bytes: 1000,
            up_packets: 1,
            down_bytes: 5000,
            down_packets: 1,
        };
        assert_eq!(f.usage().unwrap(), vec![(a, u), (b, Usage::default())]);
        // Extending keeps the counters; the kernel timing out `allowed` keeps them too.
        f.allow(&[(a, Duration::from_secs(600))]).unwrap();
        f.advance(Duration::from_secs(700));
        assert!(f.list_allowed().unwrap().is_empty());
        assert_eq!(f.usage().unwrap()[0], (a, u));
        f.remove(&[a]).unwrap();
        assert_eq!(f.usage().unwrap(), vec![(b, Usage::default())]);
        f.add_usage(b, 7, 0);
        f.install(&ruleset::sample(), &[(b, Duration::from_secs(60))])
            .unwrap();
        assert_eq!(f.usage().unwrap(), vec![(b, Usage::default())]);
        f.flush();
        assert!(f.usage().is_err());
    }

    #[test]
    fn memory_firewall_reports_flushed_and_changed_tables() {
        let mut f = MemoryFirewall::new();
        f.install(&ruleset::sample(), &[]).unwrap();
        assert_eq!(f.health().unwrap(), Health::Intact);
        f.tamper("a rule was deleted");
        assert!(matches!(f.check().unwrap(), TableHealth::Changed(_)));
        assert_eq!(f.health().unwrap(), Health::Missing);
        f.install(&ruleset::sample(), &[]).unwrap();
        f.set_blocked(&[Mac([2, 0, 0, 0, 0, 7])]).unwrap();
        assert_eq!(f.installed.as_ref().unwrap().blocked.len(), 1);
        assert!(f.set_garden(&[("10.0.0.0".parse().unwrap(), 40)]).is_err());
        f.flush();
        assert_eq!(f.check().unwrap(), TableHealth::Missing);
    }
}
