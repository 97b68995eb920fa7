//! `wifiposd serve`: wires config → store → firewall → portal and keeps them true to each other.
//!
//! Owns: the [`Sessions`] gate (verify a voucher, decide and record it in the store, open the
//! firewall), start-up restore of every active session, the periodic check that rebuilds a
//! flushed table and re-programs remaining times after a wall-clock jump, SIGHUP reload and
//! SIGTERM exit. The kernel keeps enforcing when the daemon is gone.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{self, Config};
use crate::conntrack::{self, Connections};
use crate::ends::Ends;
use crate::firewall::netlink::NetlinkFirewall;
use crate::firewall::{Firewall, FirewallError, Health, MemoryFirewall, Ruleset};
use crate::keys::Keyring;
use crate::mac::Mac;
use crate::neigh;
use crate::policy::{Clock, FirewallAction, MacRule};
use crate::portal::pages::Lang;
use crate::portal::{self, Access, Gate, Limits, Portal, PortalConfig, RedeemError};
use crate::store::{Store, StoreError};
use crate::voucher;
use crate::{admin, control};

/// Before this moment (2026-01-01) the router's clock is surely stale (not yet set by NTP):
/// redemption deadlines are not enforced while the clock reads earlier.
pub const CLOCK_SANE_AFTER: i64 = 1_767_225_600;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] crate::portal::tls::TlsError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the guest interface {0} has no IPv4 address, so the portal has none: give {0} an address (the guest network in /etc/config/network) or set `option portal_address` in /etc/config/wifipos")]
    NoPortalAddress(String),
    #[error(
        "{0}; check `option guest_iface` in /etc/config/wifipos (or set `option portal_address`)"
    )]
    Interface(#[from] crate::ifaddr::IfError),
}

/// Where `option portal_address` is unset, takes the guest interface's primary IPv4 address
/// from the kernel; refuses (naming the interface) when there is none.
pub fn resolve_portal_address(cfg: &mut Config) -> Result<(), DaemonError> {
    if cfg.portal_address_set {
        return Ok(());
    }
    let addrs = crate::ifaddr::addresses_of(&cfg.guest_iface)?;
    let ip = crate::ifaddr::primary_v4(&addrs)
        .ok_or_else(|| DaemonError::NoPortalAddress(cfg.guest_iface.clone()))?;
    cfg.portal_address = ip.into();
    Ok(())
}

pub fn wall_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Sessions as the portal sees them: store and firewall behind the [`Gate`].
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
}

impl Sessions {
    /// Sessions without connection tracking (tests, `--dev`); set [`Sessions::conns`] for the
    /// kernel's.
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
        if let Err(e) = self.firewall.remove(&ended) {
            eprintln!("wifiposd: cannot take devices whose time is up out of the firewall: {e}");
        }
        self.end_connections(&ended, "time is up");
        ended.len()
    }

    fn clock(now: i64) -> Clock {
        Clock {
            now,
            trusted: now >= CLOCK_SANE_AFTER,
        }
    }

    /// Puts the whole table back (for the config and the admin's MAC rules) with every active
    /// session's remaining time.
    pub fn restore(&mut self, now: i64) -> Result<usize, DaemonError> {
        let rules = ruleset(&self.cfg, &self.store.rules()?);
        let active = self.store.active_sessions(now)?;
        let allowed: Vec<(Mac, Duration)> = active
            .iter()
            .map(|(m, until)| (*m, Duration::from_secs((until - now).max(1) as u64)))
            .collect();
        self.firewall.install(&rules, &allowed)?;
        self.ends.reset(&active);
        Ok(allowed.len())
    }

    /// After a wall-clock jump of `by` seconds: rebase sessions that began before the clock was
    /// trusted, then give every device exactly its remaining time and take out the ones whose
    /// time is now over.
    pub fn reprogram(&mut self, by: i64, now: i64) -> Result<(usize, usize), DaemonError> {
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
    pub fn apply(&mut self, actions: &[FirewallAction], now: i64) -> Result<(), DaemonError> {
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
        self.firewall.remove(&remove)?;
        self.firewall.allow(&allow)?;
        self.end_connections(&remove, "access taken away");
        Ok(())
    }
}

impl Gate for Sessions {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError> {
        let v = match voucher::verify(input, &self.keyring) {
            Ok(v) => v,
            Err(why) => {
                if let Err(e) = self.store.record_refusal(Some(mac), &why, now) {
                    eprintln!("wifiposd: cannot record a refusal: {e}");
                }
                return Err(RedeemError::Refused(why));
            }
        };
        let r = match self.store.redeem(&v, mac, Sessions::clock(now)) {
            Err(e) => return Err(RedeemError::Internal(e.to_string())),
            Ok(Err(why)) => return Err(RedeemError::Refused(why)),
            Ok(Ok(r)) => r,
        };
        let left = Duration::from_secs((r.device_until - now).max(1) as u64);
        self.ends.set(mac, r.device_until);
        if let Err(e) = self.firewall.allow(&[(mac, left)]) {
            // The table was likely removed from outside: rebuild it from the store, which
            // already holds this device. If even that fails, take the redemption back so the
            // "not saved" page the customer gets is true and the slot stays free.
            eprintln!("wifiposd: cannot add {mac} to the firewall ({e}); rebuilding the table");
            if let Err(e) = self.restore(now) {
                if r.grant.new_device {
                    if let Err(u) =
                        self.store
                            .undo_redemption(v.key_id, v.serial, mac, r.grant.first_use, now)
                    {
                        eprintln!("wifiposd: cannot take back the redemption of {mac}: {u}");
                    }
                }
                return Err(RedeemError::Internal(e.to_string()));
            }
        }
        Ok(Access {
            seconds_left: (r.grant.ends_at - now).max(0) as u64,
            devices: r.grant.devices,
            max_devices: r.max_devices,
        })
    }

    fn genuine(&mut self, input: &str) -> Option<(crate::keys::KeyId, u64)> {
        voucher::verify(input, &self.keyring)
            .ok()
            .map(|v| (v.key_id, v.serial))
    }

    fn access(&mut self, mac: Mac, now: i64) -> Option<Access> {
        match self.store.access(mac, now) {
            Ok(a) => a.map(|a| Access {
                seconds_left: (a.until - now).max(0) as u64,
                devices: a.devices,
                max_devices: a.max_devices,
            }),
            Err(e) => {
                eprintln!("wifiposd: cannot read sessions: {e}");
                None
            }
        }
    }
}

/// The first install: the table may be removed from outside while it is being built (a
/// firewall restart at boot, an admin's `nft flush ruleset`), so try a few times before giving
/// up — the daemon must not exit and leave the guest network without its table over a race.
fn restore_at_start(s: &mut Sessions, now: i64) -> Result<usize, DaemonError> {
    let mut tries = 0;
    loop {
        match s.restore(now) {
            Ok(n) => return Ok(n),
            Err(DaemonError::Firewall(e)) if tries < 10 => {
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
fn end_lapsed_at_start(s: &mut Sessions, now: i64) {
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

/// How `serve` runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Where the config was read from, to re-read on SIGHUP (`None` for the embedded default).
    pub config_path: Option<PathBuf>,
    /// Unprivileged laptop mode: 127.0.0.1, in-memory firewall, temporary database, every
    /// client is one device.
    pub dev: bool,
    /// Overrides the configured port.
    pub port: Option<u16>,
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
pub fn apply_rules(s: &mut Sessions) -> Result<(), DaemonError> {
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
pub fn apply_revocations(s: &mut Sessions, now: i64) -> Result<usize, DaemonError> {
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

fn portal_config(cfg: &Config) -> PortalConfig {
    PortalConfig {
        venue: cfg.venue.clone(),
        portal_url: cfg.portal_url(),
        default_lang: Lang::from_code(&cfg.language).unwrap_or(Lang::En),
        attempts_per_minute: cfg.attempts_per_minute,
    }
}

/// Reads and validates a config file, printing its warnings.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, DaemonError> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| DaemonError::Config(format!("cannot read {}: {e}", p.display())))?,
        ),
        None => (
            "(embedded default)".to_owned(),
            config::DEFAULT_UCI.to_owned(),
        ),
    };
    let (cfg, warnings) =
        config::parse(&name, &text).map_err(|e| DaemonError::Config(e.to_string()))?;
    for w in warnings {
        eprintln!("wifiposd: warning: {w}");
    }
    Ok(cfg)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(mut cfg: Config, opts: ServeOptions) -> Result<(), DaemonError> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let mut _dev_dir = None;
    if opts.dev {
        cfg.portal_address = std::net::IpAddr::from([127, 0, 0, 1]);
        cfg.portal_address_set = true;
        let dir = std::env::temp_dir().join(format!("wifiposd-dev-{}", std::process::id()));
        cfg.database = dir.join("wifipos.db");
        cfg.control_socket = dir.join("wifiposd.sock");
        _dev_dir = Some(TempDir(dir));
    }
    if let Some(p) = opts.port {
        cfg.portal_port = p;
    }
    if !opts.dev {
        resolve_portal_address(&mut cfg)?;
    }
    let keyring =
        Keyring::from_b64(&cfg.trusted_keys).map_err(|e| DaemonError::Config(e.to_string()))?;
    if keyring.is_empty() {
        eprintln!("wifiposd: warning: no trusted_key configured: every voucher will be refused");
    }
    let store = Store::open(&cfg.database)?;
    let firewall: Box<dyn Firewall> = if opts.dev {
        Box::new(MemoryFirewall::new())
    } else {
        Box::new(NetlinkFirewall::new())
    };
    let portal_cfg = portal_config(&cfg);
    // Photos are decoded by a child process of this very binary (killable, CPU and memory
    // limited); /proc/self/exe still works after the file was replaced by an upgrade.
    let exe = if std::path::Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("wifiposd"))
    };
    let limits = Limits {
        max_connections: cfg.max_connections,
        decoder: portal::Decoder::Child(exe),
        ..Limits::default()
    };
    let host = if opts.dev { "127.0.0.1" } else { "[::]" };
    let bind = format!("{host}:{}", cfg.portal_port);
    // HTTPS: the certificate must be usable before anything starts.
    let tls = match cfg.tls() {
        Some((_, cert, key)) => Some((
            format!("{host}:{}", cfg.https_port),
            portal::tls::Tls::new(cert, key, wall_now())?,
        )),
        None => None,
    };
    let (portal_url, guest_iface, control_path) = (
        cfg.portal_url(),
        cfg.guest_iface.clone(),
        cfg.control_socket.clone(),
    );
    let mut sessions = Sessions::new(store, firewall, keyring, cfg);
    if !opts.dev {
        sessions.conns = Box::new(conntrack::Kernel::new(&guest_iface));
    }
    let now = wall_now();
    let restored = restore_at_start(&mut sessions, now)?;
    let revoked = apply_revocations(&mut sessions, now)?;
    end_lapsed_at_start(&mut sessions, now);
    eprintln!(
        "wifiposd: {} sessions restored in {} ms; portal {} on {}{}",
        restored,
        started.elapsed().as_millis(),
        portal_url,
        guest_iface,
        if revoked > 0 {
            format!("; {revoked} vouchers revoked from the config")
        } else {
            String::new()
        }
    );
    let sessions = Rc::new(RefCell::new(sessions));
    let portal = Rc::new(RefCell::new(Portal::new(portal_cfg, sessions.clone())));
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: bind.clone(),
                source,
            })?;
        let https = match tls {
            Some((addr, tls)) => {
                let l = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|source| DaemonError::Listen { addr, source })?;
                Some((l, tls))
            }
            None => None,
        };
        let certs = https.as_ref().map(|(_, t)| t.clone());
        let control =
            control::bind(&control_path).map_err(|e| DaemonError::Config(e.to_string()))?;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let keeper = tokio::task::spawn_local(keep_in_sync(
                    sessions.clone(),
                    portal.clone(),
                    opts.config_path.clone(),
                    certs,
                ));
                let admin = {
                    let sessions = sessions.clone();
                    control::serve(&control.listener, move |req| {
                        let uptime_s = started.elapsed().as_secs();
                        admin::handle(&mut sessions.borrow_mut(), uptime_s, &req, wall_now())
                    })
                };
                let shutdown = async {
                    let term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                    match term {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = term.recv() => {},
                                _ = tokio::signal::ctrl_c() => {},
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                    eprintln!("wifiposd: stopping; paid devices keep their access in the kernel");
                };
                let portal = async {
                    if opts.dev {
                        portal::serve_with_tls(
                            listener,
                            https,
                            portal,
                            neigh::Fixed(Mac([2, 0, 0, 0, 0, 1])),
                            limits,
                            shutdown,
                        )
                        .await;
                    } else {
                        let sessions = sessions.clone();
                        let neigh = neigh::Kernel::reporting(move |c| {
                            let detail = c.to_string();
                            let mut s = sessions.borrow_mut();
                            if let Err(e) =
                                s.store.record_conflict(c.neighbour, &detail, wall_now())
                            {
                                eprintln!("wifiposd: cannot record an address conflict: {e}");
                            }
                        });
                        portal::serve_with_tls(listener, https, portal, neigh, limits, shutdown)
                            .await;
                    }
                };
                tokio::select! {
                    _ = portal => {},
                    _ = admin => {},
                }
                keeper.abort();
            })
            .await;
        Ok(())
    })
}

/// Every second: rebuild the table if someone removed it; after a wall-clock jump, re-program
/// remaining times; once a day, prune old rows. On SIGHUP: re-read the config and apply it
/// without dropping anyone.
async fn keep_in_sync(
    sessions: Rc<RefCell<Sessions>>,
    portal: Rc<RefCell<Portal<Rc<RefCell<Sessions>>>>>,
    config_path: Option<PathBuf>,
    certs: Option<Rc<portal::tls::Tls>>,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut mono, mut wall) = (Instant::now(), wall_now());
    // Old rows go once a day (the first tick included), so the file on flash stays small.
    let mut pruned: Option<Instant> = None;
    let mut clones = crate::fdb::CloneWatch::default();
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        // The next end of a paid device's time: wake at that second to end its connections.
        let next_end = sessions.borrow().ends.next();
        let end = async {
            match next_end {
                Some(t) => tokio::time::sleep(until_wall(t)).await,
                None => std::future::pending::<()>().await,
            }
        };
        let (reloading, ending) = tokio::select! {
            _ = tick.tick() => (false, false),
            _ = hangup => (true, false),
            _ = end => (false, true),
        };
        let now = wall_now();
        let mut s = sessions.borrow_mut();
        if ending {
            s.end_due(now);
            continue;
        }
        if reloading {
            if let Some(t) = &certs {
                match t.reload(now) {
                    Ok(()) => eprintln!("wifiposd: TLS certificate re-read"),
                    Err(e) => eprintln!("wifiposd: reload: {e}"),
                }
            }
            match load_config(config_path.as_deref()) {
                Ok(new) => {
                    let msg = reload(&mut s, new, now);
                    portal.borrow_mut().cfg = portal_config(&s.cfg);
                    eprintln!("wifiposd: {msg}");
                }
                Err(e) => eprintln!("wifiposd: reload refused, keeping the running config: {e}"),
            }
            continue;
        }
        // A jump: wall time moved differently from monotonic time by more than 10 s.
        let expected = wall + mono.elapsed().as_secs() as i64;
        if (now - expected).abs() > 10 {
            match s.reprogram(now - expected, now) {
                Ok((kept, gone)) => eprintln!(
                    "wifiposd: the clock jumped by {} s; {kept} sessions re-programmed, {gone} ended",
                    now - expected
                ),
                Err(e) => eprintln!("wifiposd: after a clock jump: {e}"),
            }
        }
        (mono, wall) = (Instant::now(), now);
        s.end_due(now);
        s.conns.observe();
        if pruned.is_none_or(|t| t.elapsed() >= Duration::from_secs(86_400)) {
            pruned = Some(Instant::now());
            let keep_days = s.cfg.keep_days;
            match s.store.prune(now, keep_days) {
                Ok(0) => {}
                Ok(n) => eprintln!("wifiposd: pruned {n} rows older than {keep_days} days"),
                Err(e) => eprintln!("wifiposd: cannot prune old rows: {e}"),
            }
        }
        watch_clones(&mut s, &mut clones, now);
        match s.firewall.health() {
            Ok(Health::Intact) => {}
            Ok(Health::Missing) => match s.restore(now) {
                Ok(n) => eprintln!("wifiposd: the firewall table was removed or changed from outside; rebuilt with {n} sessions"),
                Err(e) => eprintln!("wifiposd: cannot rebuild the firewall table: {e}"),
            },
            Err(e) => eprintln!("wifiposd: firewall check failed: {e}"),
        }
    }
}

/// How long until the wall clock reads `t` (Unix seconds).
fn until_wall(t: i64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(t.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64)
}

/// One look at the guest bridge's forwarding database: logs each MAC that keeps moving between
/// ports (a clone); what to do about it is the admin's choice.
fn watch_clones(s: &mut Sessions, watch: &mut crate::fdb::CloneWatch, now: i64) {
    use crate::fdb;
    let Some(bridge) = fdb::ifindex(&s.cfg.guest_iface) else {
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
        if let Err(e) = s.store.record_clone(c.mac, &detail, now) {
            eprintln!("wifiposd: cannot record a clone: {e}");
        }
    }
}

/// Applies a re-read config: keys, revocations, trusted/blocked devices and the walled garden
/// change in place (no paid device is dropped); a new guest device rebuilds the table with
/// every session. The port, database, control socket and HTTPS settings (hostname, ports,
/// certificate paths; the certificates themselves are re-read) stay as they were started.
fn reload(s: &mut Sessions, mut new: Config, now: i64) -> String {
    new.portal_port = s.cfg.portal_port;
    new.https_port = s.cfg.https_port;
    new.portal_hostname = s.cfg.portal_hostname.clone();
    new.tls_cert = s.cfg.tls_cert.clone();
    new.tls_key = s.cfg.tls_key.clone();
    new.database = s.cfg.database.clone();
    new.control_socket = s.cfg.control_socket.clone();
    if let Err(e) = resolve_portal_address(&mut new) {
        // Keep serving at the address the portal has now.
        if !new.portal_address_set {
            new.portal_address = s.cfg.portal_address;
        }
        eprintln!(
            "wifiposd: reload: {e}; keeping the portal at {}",
            s.cfg.portal_address
        );
    }
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
    let kept = s.store.active_sessions(now).map_or(0, |a| a.len());
    format!(
        "reloaded; {kept} sessions kept{}{}",
        if problems.is_empty() { "" } else { "; " },
        problems.join("; ")
    )
}

/// Removes the dev mode's temporary folder on exit.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::TableHealth;
    use ed25519_dalek::SigningKey;

    /// A kernel that refuses everything (nf_tables gone).
    struct Broken;

    fn refused() -> FirewallError {
        FirewallError::Install("refused".into())
    }

    impl Firewall for Broken {
        fn install(&mut self, _: &Ruleset, _: &[(Mac, Duration)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn allow(&mut self, _: &[(Mac, Duration)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn remove(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError> {
            Err(refused())
        }
        fn set_trusted(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn set_blocked(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn set_garden(&mut self, _: &[(std::net::IpAddr, u8)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn check(&mut self) -> Result<TableHealth, FirewallError> {
            Err(refused())
        }
    }

    fn sessions(dir: &std::path::Path, firewall: Box<dyn Firewall>, key: &SigningKey) -> Sessions {
        Sessions::new(
            Store::open(&dir.join("w.db")).unwrap(),
            firewall,
            Keyring::new([key.verifying_key()]),
            Config::default(),
        )
    }

    fn token(key: &SigningKey, max_devices: u8) -> String {
        voucher::Voucher {
            key_id: crate::keys::KeyId::of(&key.verifying_key()),
            serial: 7,
            issued_at: CLOCK_SANE_AFTER as u32,
            redeem_by: 0,
            duration_s: 3600,
            max_devices,
            purchase_ref: String::new(),
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn a_redemption_the_firewall_cannot_carry_out_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let now = CLOCK_SANE_AFTER + 100;
        let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let t = token(&key, 1);
        {
            let mut s = sessions(dir.path(), Box::new(Broken), &key);
            assert!(matches!(
                s.redeem(&t, a, now),
                Err(RedeemError::Internal(_))
            ));
            // Nothing was granted: the voucher is unused and the device holds no slot.
            assert_eq!(
                s.store
                    .voucher(crate::keys::KeyId::of(&key.verifying_key()), 7)
                    .unwrap(),
                None
            );
            assert_eq!(s.store.access(a, now).unwrap(), None);
        }
        // With a working firewall the single slot is still there for another device.
        let mut s = sessions(dir.path(), Box::new(MemoryFirewall::new()), &key);
        let got = s.redeem(&t, b, now + 10).unwrap();
        assert_eq!(got.seconds_left, 3600);
        assert_eq!(s.firewall.list_allowed().unwrap().len(), 1);
    }

    #[test]
    fn a_table_removed_under_a_redemption_is_rebuilt_with_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let now = CLOCK_SANE_AFTER + 100;
        let mut fw = MemoryFirewall::new();
        fw.install(&ruleset(&Config::default(), &[]), &[]).unwrap();
        fw.flush();
        let mut s = sessions(dir.path(), Box::new(fw), &key);
        let a = Mac([2, 0, 0, 0, 0, 1]);
        s.redeem(&token(&key, 1), a, now).unwrap();
        assert_eq!(s.firewall.health().unwrap(), Health::Intact);
        assert_eq!(s.firewall.list_allowed().unwrap()[0].0, a);
    }
}
