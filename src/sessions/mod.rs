//! The sessions: the state the daemon runs on and every operation on it.
//!
//! Owns: [`Sessions`] (the store, the firewall, the keyring, the running config, open
//! connections and when each paid device's access ends) and what is done to it: restoring the
//! whole table with every active session (at start, after a flush, on a new guest interface),
//! re-programming after a wall-clock jump, applying the store's revocations, kicks and
//! extensions, ending connections whose time is up, the trusted/blocked sets, `list revoked`,
//! a re-read config applied in place, and recording what the watches saw (a MAC cloned on the
//! guest bridge, a forged neighbour entry). The portal's [`crate::portal::Gate`] over it is
//! `gate`; RADIUS accounting of the sessions (what is queued when) is `radius`. Not: tasks,
//! timers, signals, sockets or the clock (`daemon` passes `now` in), admin commands (`admin`).
//!
//! Imports run one way (no cycles):
//! `sessions` ← `admin` ← `control` ← `daemon` (which also uses `sessions` and `admin`);
//! `sessions` → {`portal` (only the `Gate` trait and its answers, in `gate`), `store`,
//! `firewall`, `policy`, `conntrack`, `ends`, `fdb`, `neigh`, `keys`, `voucher`, `config`,
//! `radius::packet`, `radius::auth`}, none of which imports `sessions`, `admin`, `control` or
//! `daemon` (`radius::sender` and `radius::das`, the daemon's tasks, import `sessions`, and
//! `das` also `admin`; `sessions` never imports them).

mod gate;
pub mod radius;
mod speed;
pub mod usage;

use std::time::Duration;

use crate::config::Config;
use crate::conntrack::{self, Connections};
use crate::ends::Ends;
use crate::fdb;
use crate::firewall::{Firewall, FirewallError, Ruleset};
use crate::keys::Keyring;
use crate::limits::{Limiter, MemoryLimiter};
use crate::mac::Mac;
use crate::neigh;
use crate::policy::{Clock, FirewallAction, MacRule};
use crate::store::{Store, StoreError};

/// Before this moment (2026-01-01) the router's clock is surely stale (not yet set by NTP):
/// redemption deadlines are not enforced while the clock reads earlier.
pub const CLOCK_SANE_AFTER: i64 = 1_767_225_600;

/// What can stop an operation on the sessions: the database or the kernel's firewall.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// Sessions as the portal sees them: store and firewall behind the [`crate::portal::Gate`].
pub struct Sessions {
    pub store: Store,
    pub firewall: Box<dyn Firewall>,
    pub keyring: Keyring,
    /// The running config (re-read on SIGHUP).
    pub cfg: Config,
    /// Open connections, ended with a device's access (expiry, revoke, kick, block).
    pub conns: Box<dyn Connections>,
    /// When each paid device's access ends.
    pub ends: Ends,
    /// Traffic counted by the kernel and not saved yet.
    pub meter: usage::Meter,
    /// The kernel's per-device speed limits (see `speed`).
    pub limiter: Box<dyn Limiter>,
    /// The limiter is set up on the guest interface (only once a device was limited).
    pub shaping: bool,
    /// Wakes the RADIUS sender: a record was queued.
    pub radius_wake: std::rc::Rc<tokio::sync::Notify>,
}

impl Sessions {
    /// Sessions without connection tracking nor speed limits in the kernel (tests, `--dev`);
    /// set [`Sessions::conns`] and [`Sessions::limiter`] for the kernel's.
    pub fn new(
        store: Store,
        firewall: Box<dyn Firewall>,
        keyring: Keyring,
        cfg: Config,
    ) -> Sessions {
        Sessions {
            store,
            firewall,
            keyring,
            cfg,
            conns: Box::new(conntrack::Off),
            ends: Ends::new(),
            meter: usage::Meter::default(),
            limiter: Box::new(MemoryLimiter::default()),
            shaping: false,
            radius_wake: Default::default(),
        }
    }

    /// Ends the open connections of devices whose access just ended (logged, never fatal:
    /// the firewall already refuses their new traffic).
    pub fn end_connections(&mut self, macs: &[Mac], why: &str) {
        if macs.is_empty() {
            return;
        }
        match self.conns.end(macs) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "wifiposd: {why}: {n} open connections of {} devices closed",
                macs.len()
            ),
            Err(e) => eprintln!("wifiposd: {why}: cannot close open connections: {e}"),
        }
    }

    /// The devices whose time is up by `now`: their connections are ended (unless they still
    /// have access another way: another voucher, or trusted). Returns how many ended.
    pub fn end_due(&mut self, now: i64) -> usize {
        let due = self.ends.due(now);
        if due.is_empty() {
            return 0;
        }
        let trusted = self
            .store
            .rules()
            .map(|r| mac_sets(&self.cfg, &r).0)
            .unwrap_or_default();
        let mut ended = Vec::new();
        for mac in due {
            match self.store.access(mac, now) {
                Ok(Some(a)) => self.ends.set(mac, a.until),
                Ok(None) if trusted.contains(&mac) => {}
                Ok(None) => ended.push(mac),
                Err(e) => eprintln!("wifiposd: cannot read sessions: {e}"),
            }
        }
        // The kernel's own timeout may run up to a second later (whole seconds, set at the
        // redemption): take the devices out now, so their connections cannot start again.
        // Their counters go with them: read them first.
        if !ended.is_empty() {
            self.read_usage(now);
        }
        if let Err(e) = self.firewall.remove(&ended) {
            eprintln!("wifiposd: cannot take devices whose time is up out of the firewall: {e}");
        }
        self.end_connections(&ended, "time is up");
        self.account_stop(&ended, crate::radius::TerminateCause::SessionTimeout, now);
        self.update_speed_limits(&ended, now);
        ended.len()
    }

    /// One look at the guest bridge's forwarding database: logs and records each MAC that keeps
    /// moving between ports (a clone); what to do about it is the admin's choice.
    pub fn watch_clones(&mut self, watch: &mut fdb::CloneWatch, now: i64) {
        let Some(bridge) = fdb::ifindex(&self.cfg.guest_iface) else {
            return;
        };
        let entries = match fdb::dump(bridge) {
            Ok(e) => e,
            Err(_) => return, // not a bridge (a plain interface has no forwarding database)
        };
        for c in watch.see(&entries, now) {
            let ports: Vec<String> = c.ports.iter().map(|p| fdb::port_name(*p)).collect();
            let detail = format!("seen on bridge ports {} at once", ports.join(" and "));
            eprintln!("wifiposd: possible clone: {} {detail}", c.mac);
            if let Err(e) = self.store.record_clone(c.mac, &detail, now) {
                eprintln!("wifiposd: cannot record a clone: {e}");
            }
        }
    }

    /// Records a forged neighbour entry the portal refused (`address_conflict`; logged, never
    /// fatal).
    pub fn record_conflict(&mut self, c: &neigh::Conflict, now: i64) {
        if let Err(e) = self.store.record_conflict(c.neighbour, &c.to_string(), now) {
            eprintln!("wifiposd: cannot record an address conflict: {e}");
        }
    }

    fn clock(now: i64) -> Clock {
        Clock {
            now,
            trusted: now >= CLOCK_SANE_AFTER,
        }
    }

    /// Puts the whole table back (for the config and the admin's MAC rules) with every active
    /// session's remaining time.
    pub fn restore(&mut self, now: i64) -> Result<usize, SessionsError> {
        let rules = ruleset(&self.cfg, &self.store.rules()?);
        let active = self.store.active_sessions(now)?;
        let allowed: Vec<(Mac, Duration)> = active
            .iter()
            .map(|(m, until)| (*m, Duration::from_secs((until - now).max(1) as u64)))
            .collect();
        // A rebuild starts every counter again: take what the old table counted first.
        self.read_usage(now);
        self.firewall.install(&rules, &allowed)?;
        self.meter.counters_restarted();
        self.ends.reset(&active);
        self.install_speed_limits(now);
        Ok(allowed.len())
    }

    /// After a wall-clock jump of `by` seconds: rebase sessions that began before the clock was
    /// trusted, then give every device exactly its remaining time and take out the ones whose
    /// time is now over.
    pub fn reprogram(&mut self, by: i64, now: i64) -> Result<(usize, usize), SessionsError> {
        // Sessions started on a stale clock move with it; then the firewall gets what is left.
        self.store.clock_jumped(by, Sessions::clock(now))?;
        let active = self.store.active_sessions(now)?;
        let keep: std::collections::HashSet<Mac> = active.iter().map(|(m, _)| *m).collect();
        let gone: Vec<Mac> = self
            .firewall
            .list_allowed()?
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| !keep.contains(m))
            .collect();
        self.firewall.remove(&gone)?;
        let allowed: Vec<(Mac, Duration)> = active
            .iter()
            .map(|(m, until)| (*m, Duration::from_secs((until - now).max(1) as u64)))
            .collect();
        self.firewall.allow(&allowed)?;
        self.ends.reset(&active);
        self.end_connections(&gone, "ended by a clock jump");
        Ok((allowed.len(), gone.len()))
    }

    /// Applies what the store decided (revocations, kicks, extensions); where a device has
    /// several actions, the last one counts.
    pub fn apply(&mut self, actions: &[FirewallAction], now: i64) -> Result<(), SessionsError> {
        let mut last = std::collections::HashMap::new();
        for a in actions {
            last.insert(a.mac(), a);
        }
        let mut allow = Vec::new();
        let mut remove = Vec::new();
        for a in last.values() {
            match a {
                FirewallAction::Allow { mac, until } => {
                    self.ends.set(*mac, *until);
                    allow.push((*mac, Duration::from_secs((until - now).max(0) as u64)))
                }
                FirewallAction::Remove { mac } => {
                    self.ends.remove(*mac);
                    remove.push(*mac)
                }
            }
        }
        if !remove.is_empty() {
            // Their counters go with them: read them first.
            self.read_usage(now);
        }
        self.firewall.remove(&remove)?;
        self.firewall.allow(&allow)?;
        self.end_connections(&remove, "access taken away");
        let changed: Vec<Mac> = last.keys().copied().collect();
        // Revoked or kicked (other ends report their cause before they get here).
        self.account_stop(&changed, crate::radius::TerminateCause::AdminReset, now);
        self.update_speed_limits(&changed, now);
        Ok(())
    }
}

/// The first install: the table may be removed from outside while it is being built (a
/// firewall restart at boot, an admin's `nft flush ruleset`), so try a few times before giving
/// up — the daemon must not exit and leave the guest network without its table over a race.
pub fn restore_at_start(s: &mut Sessions, now: i64) -> Result<usize, SessionsError> {
    let mut tries = 0;
    loop {
        match s.restore(now) {
            Ok(n) => return Ok(n),
            Err(SessionsError::Firewall(e)) if tries < 10 => {
                tries += 1;
                eprintln!("wifiposd: installing the firewall table failed ({e}); trying again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A daemon that was down when devices' time ran out: end the connections of every guest
/// device that has no access now (the kernel already refuses their new traffic).
pub fn end_lapsed_at_start(s: &mut Sessions, now: i64) {
    let mut keep: std::collections::HashSet<Mac> = match s.store.active_sessions(now) {
        Ok(a) => a.into_iter().map(|(m, _)| m).collect(),
        Err(e) => {
            eprintln!("wifiposd: cannot read sessions: {e}");
            return;
        }
    };
    keep.extend(
        s.store
            .rules()
            .map(|r| mac_sets(&s.cfg, &r).0)
            .unwrap_or_default(),
    );
    match s.conns.end_all_but(&keep) {
        Ok(0) => {}
        Ok(n) => {
            eprintln!("wifiposd: {n} open connections of devices without access closed at start")
        }
        Err(e) => {
            eprintln!("wifiposd: cannot close the connections of devices without access: {e}")
        }
    }
}

/// The table for this config and the admin's MAC rules (`wifiposd trust|block`).
pub fn ruleset(cfg: &Config, rules: &[(Mac, MacRule)]) -> Ruleset {
    let (trusted, blocked) = mac_sets(cfg, rules);
    Ruleset {
        guest_iface: cfg.guest_iface.clone(),
        portal_port: cfg.portal_port,
        https_port: cfg.tls().map(|_| cfg.https_port),
        trusted,
        blocked,
        garden: cfg.garden.clone(),
    }
}

/// Trusted and blocked devices: the config's lists and the admin's rules together.
pub fn mac_sets(cfg: &Config, rules: &[(Mac, MacRule)]) -> (Vec<Mac>, Vec<Mac>) {
    let pick = |list: &[Mac], want: MacRule| {
        let mut out: Vec<Mac> = list
            .iter()
            .copied()
            .chain(rules.iter().filter(|(_, r)| *r == want).map(|(m, _)| *m))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    (
        pick(&cfg.trusted_macs, MacRule::Trusted),
        pick(&cfg.blocked_macs, MacRule::Blocked),
    )
}

/// Sets the firewall's trusted and blocked sets from the config and the admin's rules.
pub fn apply_rules(s: &mut Sessions) -> Result<(), SessionsError> {
    let (trusted, blocked) = mac_sets(&s.cfg, &s.store.rules()?);
    s.firewall.set_trusted(&trusted)?;
    s.firewall.set_blocked(&blocked)?;
    for m in &blocked {
        s.ends.remove(*m);
    }
    s.end_connections(&blocked, "blocked");
    Ok(())
}

/// Revokes the vouchers the config lists (`list revoked`) that are not revoked yet; returns
/// how many.
pub fn apply_revocations(s: &mut Sessions, now: i64) -> Result<usize, SessionsError> {
    let mut n = 0;
    for r in s.cfg.revoked.clone() {
        let done = s
            .store
            .voucher(r.key_id, r.serial)?
            .is_some_and(|v| v.revoked_at.is_some());
        if !done {
            let actions = s.store.revoke(r.key_id, r.serial, now)?;
            s.apply(&actions, now)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Applies a re-read config in place: keys, revocations, trusted/blocked devices and the walled
/// garden change without dropping any paid device; a new guest device rebuilds the table with
/// every session. `new` comes with the port, database, control socket and portal address
/// already settled by the caller. Returns what happened, for the log.
pub fn reconfigure(s: &mut Sessions, new: Config, now: i64) -> String {
    let mut problems = Vec::new();
    match Keyring::from_b64(&new.trusted_keys) {
        Ok(k) => s.keyring = k,
        Err(e) => problems.push(format!("keys kept as they were: {e}")),
    }
    let rebuild = new.guest_iface != s.cfg.guest_iface;
    if rebuild {
        s.conns.set_iface(&new.guest_iface);
    }
    s.cfg = new;
    let applied = if rebuild {
        s.restore(now).map(drop)
    } else {
        apply_rules(s).and_then(|()| Ok(s.firewall.set_garden(&s.cfg.garden)?))
    };
    if let Err(e) = applied {
        problems.push(format!("firewall: {e}"));
    }
    match apply_revocations(s, now) {
        Ok(0) => {}
        Ok(n) => problems.push(format!("{n} vouchers revoked from the config")),
        Err(e) => problems.push(format!("revocations: {e}")),
    }
    if !rebuild {
        // The venue's default speeds may have changed.
        s.install_speed_limits(now);
    }
    let kept = s.store.active_sessions(now).map_or(0, |a| a.len());
    format!(
        "reloaded; {kept} sessions kept{}{}",
        if problems.is_empty() { "" } else { "; " },
        problems.join("; ")
    )
}
