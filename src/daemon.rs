//! `wifiposd serve`: wires config → store → firewall → portal and keeps them true to each other.
//!
//! Owns only the wiring: start-up (config, portal address, store, firewall, restore of every
//! active session), the tasks (portal, control socket, the once-a-second check that rebuilds a
//! flushed table, re-programs remaining times after a wall-clock jump, ends due devices, prunes
//! old rows and looks for clones on the guest bridge), SIGHUP reload and SIGTERM exit. What is
//! done to the sessions is `sessions`; what admin commands do is `admin`. The kernel keeps
//! enforcing when the daemon is gone.
//!
//! Imports run one way (no cycles): `sessions` ← `admin` ← `control` ← `daemon`, and `daemon`
//! also uses `sessions`, `admin` (the handler it gives `control`) and `portal`. Nothing imports
//! `daemon` but the binary and `doctor::gather`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{self, Config};
use crate::conntrack;
use crate::firewall::netlink::NetlinkFirewall;
use crate::firewall::{Firewall, FirewallError, Health, MemoryFirewall};
use crate::keys::Keyring;
use crate::mac::Mac;
use crate::neigh;
use crate::portal::pages::Lang;
use crate::portal::{self, Limits, Portal, PortalConfig};
use crate::sessions::{self, Sessions, SessionsError};
use crate::store::{Store, StoreError};
use crate::{admin, control};

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

impl From<SessionsError> for DaemonError {
    fn from(e: SessionsError) -> DaemonError {
        match e {
            SessionsError::Store(e) => DaemonError::Store(e),
            SessionsError::Firewall(e) => DaemonError::Firewall(e),
        }
    }
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
    let exposed = path.and_then(|p| config::secret_exposed(p, &cfg).map(|w| w.to_string()));
    for w in warnings.into_iter().chain(exposed) {
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
        sessions.limiter = Box::new(crate::limits::TcLimiter::new());
    }
    let now = wall_now();
    let restored = sessions::restore_at_start(&mut sessions, now)?;
    let revoked = sessions::apply_revocations(&mut sessions, now)?;
    sessions::end_lapsed_at_start(&mut sessions, now);
    // Sessions that ended while the daemon was down get their Stop now, sessions that have
    // none their Start.
    sessions.account_interims(now);
    sessions.account_missing_starts(now);
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
                let radius = tokio::task::spawn_local(crate::radius::sender::run(
                    sessions.clone(),
                    crate::radius::sender::Timing::default(),
                ));
                // Disconnect and CoA requests (RFC 5176): it follows the port through reloads.
                let das = tokio::task::spawn_local(crate::radius::das::run(sessions.clone()));
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
                            sessions.borrow_mut().record_conflict(c, wall_now())
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
                radius.abort();
                das.abort();
                // Accounting since the last save, so a clean stop loses none of it.
                let now = wall_now();
                let mut s = sessions.borrow_mut();
                s.read_usage(now);
                if let Err(e) = s.save_usage(now) {
                    eprintln!("wifiposd: cannot save the traffic counters: {e}");
                }
            })
            .await;
        Ok(())
    })
}

/// Every second: rebuild the table if someone removed it; after a wall-clock jump, re-program
/// remaining times; once a day, prune old rows. Between: read the traffic counters (see
/// `sessions::usage`). On SIGHUP: re-read the config and apply it
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
    // RADIUS Interim-Updates (and Stops nobody reported) are looked for every 10 s.
    let mut accounted = Instant::now();
    // The traffic counters: read at once, then as `meter_round` says.
    let mut meter_at = tokio::time::Instant::now();
    let meter_wake = sessions.borrow().meter.wake.clone();
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
        let (reloading, ending, metering) = tokio::select! {
            _ = tick.tick() => (false, false, false),
            _ = hangup => (true, false, false),
            _ = end => (false, true, false),
            _ = tokio::time::sleep_until(meter_at) => (false, false, true),
            _ = meter_wake.notified() => (false, false, true),
        };
        let now = wall_now();
        let mut s = sessions.borrow_mut();
        if ending {
            s.end_due(now);
            continue;
        }
        if metering {
            meter_at = tokio::time::Instant::now() + s.meter_round(now);
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
                    // Accounting may have just been turned on.
                    s.account_missing_starts(now);
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
            let (keep_days, keep_event_days) = (s.cfg.keep_days, s.cfg.keep_event_days);
            match s.store.prune(now, keep_days, keep_event_days) {
                Ok(0) => {}
                Ok(n) => eprintln!(
                    "wifiposd: pruned {n} rows (ended vouchers older than {keep_days} days, \
                     events older than {keep_event_days} days)"
                ),
                Err(e) => eprintln!("wifiposd: cannot prune old rows: {e}"),
            }
        }
        s.watch_clones(&mut clones, now);
        if accounted.elapsed() >= Duration::from_secs(10) {
            accounted = Instant::now();
            s.account_interims(now);
        }
        match s.firewall.health() {
            Ok(Health::Intact) => {}
            Ok(Health::Missing) => match s.restore(now) {
                Ok(n) => eprintln!("wifiposd: the firewall table was removed or changed from outside; rebuilt with {n} sessions"),
                Err(e) => eprintln!("wifiposd: cannot rebuild the firewall table: {e}"),
            },
            Err(e) => eprintln!("wifiposd: firewall check failed: {e}"),
        }
        s.check_speed_limits(now);
    }
}

/// How long until the wall clock reads `t` (Unix seconds).
fn until_wall(t: i64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(t.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64)
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
    sessions::reconfigure(s, new, now)
}

/// Removes the dev mode's temporary folder on exit.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
