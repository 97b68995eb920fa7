//! `/etc/config/wifipos`: the daemon's settings, typed and validated, with a default for each.
//!
//! Owns: the meaning of every option of the `config wifipos` section, its default, what values
//! are allowed, and the messages a venue owner sees when a value is wrong (file, line, option,
//! what is allowed). The UCI syntax itself is [`uci`], a port of libuci's parser.
//! Pure: no I/O except the explicit [`load`] helper, no clock. The daemon reads this file
//! itself, so there is one source of truth and it can be checked off the router
//! (`wifiposd check-config --config FILE`).

pub mod uci;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::keys::{self, KeyId};
use crate::mac::Mac;

/// The documented default config, as shipped in the package (also what `serve --dev` uses).
pub const DEFAULT_UCI: &str = include_str!("../files/etc/config/wifipos");

/// Where the package installs the config.
pub const DEFAULT_PATH: &str = "/etc/config/wifipos";

/// Languages the portal speaks.
pub const LANGUAGES: [&str; 3] = ["en", "de", "es"];

/// How much the daemon logs (to logd through procd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }

    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }
}

/// A voucher revoked in the config: `list revoked 'KEYID:SERIAL'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revoked {
    pub key_id: KeyId,
    pub serial: u64,
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_id, self.serial)
    }
}

/// The venue name when `option venue` is not set; the portal then greets without a name.
pub const DEFAULT_VENUE: &str = "Wi-Fi";

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The guest network's device (the bridge): `option guest_iface`.
    pub guest_iface: String,
    /// The router's address on the guest network: `option portal_address`. When the file
    /// does not set it ([`Config::portal_address_set`] false), the daemon takes the guest
    /// interface's IPv4 address at start (`ifaddr::primary_v4`); until then this holds the
    /// usual 10.20.0.1.
    pub portal_address: IpAddr,
    /// Whether `option portal_address` is in the file.
    pub portal_address_set: bool,
    pub portal_port: u16,
    /// The SQLite file: `option database`.
    pub database: PathBuf,
    /// Shown on the portal: `option venue`.
    pub venue: String,
    /// `option language`: one of [`LANGUAGES`].
    pub language: String,
    /// `list trusted_key`: base64 Ed25519 public keys of the tills, each checked.
    pub trusted_keys: Vec<String>,
    /// `list garden`: IPv4/IPv6 addresses or prefixes reachable before paying, as `(address,
    /// prefix length)`.
    pub garden: Vec<(IpAddr, u8)>,
    /// `list trusted_mac`: staff devices, never asked for a voucher.
    pub trusted_macs: Vec<Mac>,
    /// `list blocked_mac`: devices refused everything.
    pub blocked_macs: Vec<Mac>,
    /// `option max_connections`: open portal connections at once.
    pub max_connections: usize,
    /// `option attempts_per_minute`: voucher attempts per minute per source address (IPv6: /64)
    /// and per genuine voucher; all sources together get 12 times as many.
    pub attempts_per_minute: u32,
    /// `option keep_days`: ended vouchers and their devices are deleted after this many days.
    pub keep_days: u32,
    /// `option keep_event_days`: events (the log of redemptions, refusals, …) are deleted after
    /// this many days.
    pub keep_event_days: u32,
    /// `option device_idle_replace`: minutes without traffic after which a device on a full
    /// voucher gives its place to a new one (a phone back with a new private MAC); 0 = never.
    pub device_idle_replace_min: u32,
    /// `option default_down_kbit` / `default_up_kbit`: each paid device's speed limit when its
    /// voucher carries none; empty = unlimited.
    pub default_down_kbit: Option<u32>,
    pub default_up_kbit: Option<u32>,
    /// `option log_level`.
    pub log_level: LogLevel,
    /// `list revoked`: vouchers refused even if validly signed.
    pub revoked: Vec<Revoked>,
    /// `option control_socket`: where `wifiposd status|sessions|…` reach the daemon.
    pub control_socket: PathBuf,
    /// `option portal_hostname`: the name the venue owns for the portal (HTTPS).
    pub portal_hostname: Option<String>,
    /// `option tls_cert`: PEM certificate chain for `portal_hostname`.
    pub tls_cert: Option<PathBuf>,
    /// `option tls_key`: PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `option https_port`.
    pub https_port: u16,
    /// `option radius_server`: where RADIUS accounting (RFC 2866) goes, as an IP address and
    /// UDP port (default 1813); `None` = accounting off.
    pub radius_server: Option<std::net::SocketAddr>,
    /// `option radius_secret`: the shared secret with the RADIUS server.
    pub radius_secret: String,
    /// `option radius_interim`: seconds between Interim-Updates of a device's session.
    pub radius_interim_s: u32,
    /// `option radius_nas_id`: NAS-Identifier and Called-Station-Id (default: the venue).
    pub radius_nas_id: Option<String>,
    /// `option radius_auth_server`: where each redemption is authorized centrally
    /// (Access-Request, RFC 2865), as an IP address and UDP port (default 1812); `None` = the
    /// router decides alone.
    pub radius_auth_server: Option<std::net::SocketAddr>,
    /// `option radius_timeout_ms`: how long a redemption waits for the central answer before
    /// the router's own decision stands.
    pub radius_timeout_ms: u32,
    /// `option radius_coa_port`: the UDP port where Disconnect and CoA requests (RFC 5176) from
    /// the RADIUS server are taken; `None` = not listening.
    pub radius_coa_port: Option<u16>,
}

impl Config {
    /// The URL customers see, also printed in the QR codes: `http://ADDR:PORT`, or
    /// `https://HOSTNAME[:PORT]` when TLS is configured.
    pub fn portal_url(&self) -> String {
        if let Some((host, _, _)) = self.tls() {
            return match self.https_port {
                443 => format!("https://{host}"),
                p => format!("https://{host}:{p}"),
            };
        }
        match self.portal_address {
            IpAddr::V6(a) => format!("http://[{a}]:{}", self.portal_port),
            IpAddr::V4(a) => format!("http://{a}:{}", self.portal_port),
        }
    }

    /// The RFC 8910 captive-portal API URI to hand out as DHCP option 114: only with TLS, as
    /// phones ignore an `http://` one (RFC 8908 §4).
    pub fn captive_api_url(&self) -> Option<String> {
        self.tls()
            .map(|_| format!("{}/api/captive", self.portal_url()))
    }

    /// Hostname, certificate and key when all three are set (HTTPS on).
    pub fn tls(&self) -> Option<(&str, &Path, &Path)> {
        match (&self.portal_hostname, &self.tls_cert, &self.tls_key) {
            (Some(h), Some(c), Some(k)) => Some((h, c, k)),
            _ => None,
        }
    }

    /// The NAS-Identifier sent to the RADIUS server: `option radius_nas_id`, else the venue.
    pub fn nas_id(&self) -> &str {
        self.radius_nas_id.as_deref().unwrap_or(&self.venue)
    }

    /// Where Access-Requests go and the secret, when both are set (central authorization on).
    pub fn radius_auth(&self) -> Option<(std::net::SocketAddr, &[u8])> {
        self.radius_auth_server
            .filter(|_| !self.radius_secret.is_empty())
            .map(|a| (a, self.radius_secret.as_bytes()))
    }

    /// The port for Disconnect and CoA requests and the addresses they are taken from (the
    /// accounting and authorization servers'), when the port and the secret are set.
    pub fn radius_coa(&self) -> Option<(u16, Vec<IpAddr>, &[u8])> {
        let port = self
            .radius_coa_port
            .filter(|_| !self.radius_secret.is_empty())?;
        let mut from: Vec<IpAddr> = [self.radius_server, self.radius_auth_server]
            .into_iter()
            .flatten()
            .map(|a| a.ip())
            .collect();
        from.dedup();
        Some((port, from, self.radius_secret.as_bytes()))
    }

    /// Where accounting goes and its secret, when both are set (accounting on).
    pub fn radius(&self) -> Option<(std::net::SocketAddr, &[u8])> {
        self.radius_server
            .filter(|_| !self.radius_secret.is_empty())
            .map(|a| (a, self.radius_secret.as_bytes()))
    }

    /// Some but not all of `portal_hostname`, `tls_cert`, `tls_key` set: what is missing.
    pub fn tls_incomplete(&self) -> Option<String> {
        let set = [
            ("portal_hostname", self.portal_hostname.is_some()),
            ("tls_cert", self.tls_cert.is_some()),
            ("tls_key", self.tls_key.is_some()),
        ];
        let missing: Vec<&str> = set.iter().filter(|s| !s.1).map(|s| s.0).collect();
        (!missing.is_empty() && missing.len() < 3).then(|| {
            format!(
                "HTTPS needs option portal_hostname, tls_cert and tls_key together; {} is not set",
                missing.join(" and ")
            )
        })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            guest_iface: "br-guest".into(),
            portal_address: IpAddr::from([10, 20, 0, 1]),
            portal_address_set: false,
            portal_port: 2050,
            database: "/etc/wifipos/wifipos.db".into(),
            venue: DEFAULT_VENUE.into(),
            language: "en".into(),
            trusted_keys: Vec::new(),
            garden: Vec::new(),
            trusted_macs: Vec::new(),
            blocked_macs: Vec::new(),
            max_connections: 512,
            attempts_per_minute: 10,
            keep_days: 90,
            keep_event_days: 90,
            device_idle_replace_min: 10,
            default_down_kbit: None,
            default_up_kbit: None,
            log_level: LogLevel::Info,
            revoked: Vec::new(),
            control_socket: DEFAULT_CONTROL_SOCKET.into(),
            portal_hostname: None,
            tls_cert: None,
            tls_key: None,
            https_port: 443,
            radius_server: None,
            radius_secret: String::new(),
            radius_interim_s: 300,
            radius_nas_id: None,
            radius_auth_server: None,
            radius_timeout_ms: 1000,
            radius_coa_port: None,
        }
    }
}

/// What is wrong with a config file. Each message names the file and line and says what to
/// write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid UCI (the router's `uci` would refuse it too).
    #[error("{file}:{}: {}", .error.line, .error.problem)]
    Syntax {
        file: String,
        error: uci::SyntaxError,
    },
    /// An option's value is not one of the allowed ones.
    #[error("{file}:{line}: option '{option}': '{value}' is not valid; {allowed}")]
    Invalid {
        file: String,
        line: usize,
        option: String,
        value: String,
        allowed: String,
    },
    /// `option NAME` with nothing after it.
    #[error("{file}:{line}: option '{option}' has no value; write option {option} 'VALUE' or delete the line")]
    NoValue {
        file: String,
        line: usize,
        option: String,
    },
    /// `list NAME` for a setting that takes one value.
    #[error("{file}:{line}: option '{option}' takes one value: write it once as option {option} '…', not as a list")]
    NotAList {
        file: String,
        line: usize,
        option: String,
    },
    /// No `config wifipos` section at all.
    #[error("{file}: there is no 'config wifipos' section; the file should start with: config wifipos 'main'")]
    NoSection { file: String },
    /// Some but not all of `portal_hostname`, `tls_cert`, `tls_key`.
    #[error("{file}: {message}")]
    TlsIncomplete { file: String, message: String },
    /// `option radius_server`, `radius_auth_server` or `radius_coa_port` without
    /// `option radius_secret`.
    #[error("{file}: option {option} is set but option radius_secret is not; RADIUS needs the secret shared with the server (its clients.conf)")]
    RadiusNoSecret { file: String, option: &'static str },
}

impl ConfigError {
    /// The line the problem is on (0 when it is about the whole file).
    pub fn line(&self) -> usize {
        match self {
            ConfigError::Syntax { error, .. } => error.line,
            ConfigError::Invalid { line, .. }
            | ConfigError::NoValue { line, .. }
            | ConfigError::NotAList { line, .. } => *line,
            ConfigError::NoSection { .. }
            | ConfigError::TlsIncomplete { .. }
            | ConfigError::RadiusNoSecret { .. } => 0,
        }
    }
}

/// Something the daemon ignores but the owner probably did not mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Everything `check-config` reports about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The settings: defaults where an option is missing or invalid.
    pub config: Config,
    pub warnings: Vec<Warning>,
    /// Empty if the file is valid.
    pub errors: Vec<ConfigError>,
}

/// Checks a config file's text and reports every problem (a syntax error stops at the first,
/// as libuci does).
pub fn check(file: &str, text: &str) -> Report {
    let mut report = Report {
        config: Config::default(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    let pkg = match uci::parse(text) {
        Ok(p) => p,
        Err(error) => {
            report.errors.push(ConfigError::Syntax {
                file: file.into(),
                error,
            });
            return report;
        }
    };
    let mut ours = pkg
        .sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "wifipos");
    let Some((index, section)) = ours.next() else {
        report
            .errors
            .push(ConfigError::NoSection { file: file.into() });
        return report;
    };
    for (_, extra) in ours {
        report.warnings.push(Warning {
            file: file.into(),
            line: extra.line,
            message: format!(
                "a second 'config wifipos' section is ignored; only the one on line {} counts",
                section.line
            ),
        });
    }
    for other in pkg.sections.iter().filter(|s| s.kind != "wifipos") {
        report.warnings.push(Warning {
            file: file.into(),
            line: other.line,
            message: format!("section type '{}' is unknown and ignored", other.kind),
        });
    }
    let mut v = Validator {
        file,
        cfg: &mut report.config,
        warnings: &mut report.warnings,
        errors: &mut report.errors,
    };
    for (si, name, line) in &pkg.valueless {
        if *si == index && KNOWN.contains(&name.as_str()) {
            v.errors.push(ConfigError::NoValue {
                file: file.into(),
                line: *line,
                option: name.clone(),
            });
        }
    }
    for opt in &section.options {
        v.option(opt);
    }
    let c = &report.config;
    let radius_set = [
        ("radius_server", c.radius_server.is_some()),
        ("radius_auth_server", c.radius_auth_server.is_some()),
        ("radius_coa_port", c.radius_coa_port.is_some()),
    ];
    if c.radius_secret.is_empty() {
        if let Some((option, _)) = radius_set.iter().find(|o| o.1) {
            report.errors.push(ConfigError::RadiusNoSecret {
                file: file.into(),
                option,
            });
        }
    }
    if let Some(message) = report.config.tls_incomplete() {
        report.errors.push(ConfigError::TlsIncomplete {
            file: file.into(),
            message,
        });
    }
    report.errors.sort_by_key(ConfigError::line);
    report.warnings.sort_by_key(|w| w.line);
    report
}

/// Parses and validates a config file's text. Returns the config and its warnings, or the first
/// error.
pub fn parse(file: &str, text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    let mut r = check(file, text);
    if !r.errors.is_empty() {
        return Err(r.errors.swap_remove(0));
    }
    Ok((
        r.config,
        r.warnings.iter().map(Warning::to_string).collect(),
    ))
}

/// Why [`load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a config file and checks it: the one I/O helper of this module.
pub fn load(path: &Path) -> Result<Report, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    let mut report = check(&path.display().to_string(), &text);
    report.warnings.extend(secret_exposed(path, &report.config));
    Ok(report)
}

/// A warning when the file holds `radius_secret` and users other than root may read it (the
/// package installs it 0600; an editor or a copy may have changed that).
pub fn secret_exposed(path: &Path, cfg: &Config) -> Option<Warning> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (!cfg.radius_secret.is_empty() && mode & 0o077 != 0).then(|| Warning {
        file: path.display().to_string(),
        line: 0,
        message: format!(
            "it holds option radius_secret but its mode is {:o}, so other users can read the secret; run chmod 600 {}",
            mode & 0o777,
            path.display()
        ),
    })
}

/// Every option of `config wifipos`.
pub const KNOWN: [&str; 31] = [
    "guest_iface",
    "portal_address",
    "portal_port",
    "database",
    "venue",
    "language",
    "trusted_key",
    "garden",
    "trusted_mac",
    "blocked_mac",
    "max_connections",
    "attempts_per_minute",
    "keep_days",
    "keep_event_days",
    "device_idle_replace",
    "default_down_kbit",
    "default_up_kbit",
    "log_level",
    "revoked",
    "control_socket",
    "portal_hostname",
    "tls_cert",
    "tls_key",
    "https_port",
    "radius_server",
    "radius_secret",
    "radius_interim",
    "radius_nas_id",
    "radius_auth_server",
    "radius_timeout_ms",
    "radius_coa_port",
];

/// The control socket's default path (root-only).
pub const DEFAULT_CONTROL_SOCKET: &str = "/var/run/wifiposd.sock";

struct Validator<'a> {
    file: &'a str,
    cfg: &'a mut Config,
    warnings: &'a mut Vec<Warning>,
    errors: &'a mut Vec<ConfigError>,
}

impl Validator<'_> {
    fn invalid(&mut self, option: &str, (value, line): &(String, usize), allowed: &str) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.into(),
            line: *line,
            option: option.into(),
            value: value.clone(),
            allowed: allowed.into(),
        });
    }

    /// The one value of a single-valued option, or `None` (error recorded) for a list.
    fn one<'o>(&mut self, opt: &'o uci::UciOption) -> Option<&'o (String, usize)> {
        if opt.is_list {
            self.errors.push(ConfigError::NotAList {
                file: self.file.into(),
                line: opt.items.last().map_or(0, |i| i.1),
                option: opt.name.clone(),
            });
            return None;
        }
        opt.items.first()
    }

    fn number(&mut self, opt: &uci::UciOption, lo: u64, hi: u64) -> Option<u64> {
        let item = self.one(opt)?;
        let n = item
            .0
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n));
        if n.is_none() {
            self.invalid(
                &opt.name,
                item,
                &format!("expected a whole number from {lo} to {hi}"),
            );
        }
        n
    }

    /// Each item of a list option through `f`; invalid items are reported, valid ones kept.
    fn each<T>(
        &mut self,
        opt: &uci::UciOption,
        allowed: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for item in &opt.items {
            match f(&item.0) {
                Ok(t) => out.push(t),
                Err(why) if why.is_empty() => self.invalid(&opt.name, item, allowed),
                Err(why) => self.invalid(&opt.name, item, &why),
            }
        }
        out
    }

    fn option(&mut self, opt: &uci::UciOption) {
        let known = KNOWN.contains(&opt.name.as_str());
        if let Some(item) = opt
            .items
            .iter()
            .find(|(v, _)| v.chars().any(|c| c.is_control() && c != '\t'))
        {
            if known {
                return self.invalid(
                    &opt.name,
                    item,
                    "it contains a control character or line break; write it on one line",
                );
            }
        }
        match opt.name.as_str() {
            "guest_iface" => {
                let Some(item) = self.one(opt) else { return };
                let ok = !item.0.is_empty()
                    && item.0.len() <= 15
                    && item
                        .0
                        .bytes()
                        .all(|c| c.is_ascii_graphic() && c != b'/' && c != b':');
                if ok {
                    self.cfg.guest_iface = item.0.clone();
                } else {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected a network device name of up to 15 characters, such as br-guest",
                    );
                }
            }
            "portal_address" => {
                let Some(item) = self.one(opt) else { return };
                match item.0.parse::<IpAddr>() {
                    Ok(a) if !a.is_unspecified() && !a.is_multicast() => {
                        self.cfg.portal_address = a;
                        self.cfg.portal_address_set = true;
                    }
                    _ => self.invalid(
                        &opt.name,
                        item,
                        "expected the router's IPv4 or IPv6 address on the guest network, such as 10.20.0.1",
                    ),
                }
            }
            "https_port" => {
                if let Some(n) = self.number(opt, 1, 65535) {
                    self.cfg.https_port = n as u16;
                }
            }
            "portal_hostname" => {
                let Some(item) = self.one(opt) else { return };
                let h = item.0.trim_end_matches('.').to_ascii_lowercase();
                let ok = h.len() <= 253
                    && h.contains('.')
                    && h.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    })
                    && h.parse::<IpAddr>().is_err();
                if ok {
                    self.cfg.portal_hostname = Some(h);
                } else {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected a DNS name the venue owns, such as wifi.cafe-nord.example",
                    );
                }
            }
            "tls_cert" | "tls_key" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.starts_with('/') && !item.0.ends_with('/') {
                    let p = Some(PathBuf::from(&item.0));
                    if opt.name == "tls_cert" {
                        self.cfg.tls_cert = p;
                    } else {
                        self.cfg.tls_key = p;
                    }
                } else {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected the absolute path of a PEM file, such as /etc/ssl/wifi.crt",
                    );
                }
            }
            "radius_server" => {
                let Some(item) = self.one(opt) else { return };
                let v = item.0.trim();
                if v.is_empty() {
                    self.cfg.radius_server = None;
                    return;
                }
                match parse_radius_server(v, 1813) {
                    Some(a) => self.cfg.radius_server = Some(a),
                    None => self.invalid(
                        &opt.name,
                        item,
                        "expected the RADIUS server's IP address, optionally with its accounting port, such as 192.0.2.5, 192.0.2.5:1813 or [2001:db8::5]:1813 (empty = accounting off)",
                    ),
                }
            }
            "radius_secret" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.is_empty() || item.0.len() > 128 {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected the secret shared with the RADIUS server (clients.conf), 1 to 128 characters",
                    );
                } else {
                    self.cfg.radius_secret = item.0.clone();
                }
            }
            "radius_interim" => {
                if let Some(n) = self.number(opt, 60, 86_400) {
                    self.cfg.radius_interim_s = n as u32;
                }
            }
            "radius_auth_server" => {
                let Some(item) = self.one(opt) else { return };
                let v = item.0.trim();
                if v.is_empty() {
                    self.cfg.radius_auth_server = None;
                    return;
                }
                match parse_radius_server(v, 1812) {
                    Some(a) => self.cfg.radius_auth_server = Some(a),
                    None => self.invalid(
                        &opt.name,
                        item,
                        "expected the RADIUS server's IP address, optionally with its authentication port, such as 192.0.2.5, 192.0.2.5:1812 or [2001:db8::5]:1812 (empty = no central authorization)",
                    ),
                }
            }
            "radius_timeout_ms" => {
                if let Some(n) = self.number(opt, 100, 10_000) {
                    self.cfg.radius_timeout_ms = n as u32;
                }
            }
            "radius_coa_port" => {
                if let Some(n) = self.number(opt, 0, 65535) {
                    self.cfg.radius_coa_port = (n != 0).then_some(n as u16);
                }
            }
            "radius_nas_id" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.trim().is_empty() || item.0.len() > 64 {
                    self.invalid(&opt.name, item, "expected a name of 1 to 64 characters");
                } else {
                    self.cfg.radius_nas_id = Some(item.0.clone());
                }
            }
            "portal_port" => {
                if let Some(n) = self.number(opt, 1, 65535) {
                    self.cfg.portal_port = n as u16;
                }
            }
            "database" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.starts_with('/') && !item.0.ends_with('/') {
                    self.cfg.database = item.0.clone().into();
                } else {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected the absolute path of a file, such as /etc/wifipos/wifipos.db",
                    );
                }
            }
            "control_socket" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.starts_with('/') && !item.0.ends_with('/') && item.0.len() < 100 {
                    self.cfg.control_socket = item.0.clone().into();
                } else {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected the absolute path of a socket file (under 100 characters), such as /var/run/wifiposd.sock",
                    );
                }
            }
            "venue" => {
                let Some(item) = self.one(opt) else { return };
                if item.0.trim().is_empty() || item.0.chars().count() > 64 || item.0.contains('\n')
                {
                    self.invalid(
                        &opt.name,
                        item,
                        "expected a name of 1 to 64 characters on one line",
                    );
                } else {
                    self.cfg.venue = item.0.clone();
                }
            }
            "language" => {
                let Some(item) = self.one(opt) else { return };
                if LANGUAGES.contains(&item.0.as_str()) {
                    self.cfg.language = item.0.clone();
                } else {
                    self.invalid(&opt.name, item, "expected en, de or es");
                }
            }
            "log_level" => {
                let Some(item) = self.one(opt) else { return };
                match LogLevel::parse(&item.0) {
                    Some(l) => self.cfg.log_level = l,
                    None => self.invalid(&opt.name, item, "expected error, warn, info or debug"),
                }
            }
            "trusted_key" => {
                self.cfg.trusted_keys = self.each(opt, "", |k| {
                    keys::parse_public_key(k)
                        .map(|_| k.trim().to_owned())
                        .map_err(|_| {
                            "expected a public key as `wifipos keygen` prints it: standard base64 of 32 bytes (44 characters ending in =)".to_owned()
                        })
                });
            }
            "garden" => {
                self.cfg.garden = self.each(
                    opt,
                    "expected an IPv4 or IPv6 address or prefix, such as 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32",
                    parse_garden,
                );
            }
            "trusted_mac" | "blocked_mac" => {
                let macs = self.each(
                    opt,
                    "expected a MAC address such as aa:bb:cc:dd:ee:ff",
                    |m| m.parse::<Mac>().map_err(|_| String::new()),
                );
                if opt.name == "trusted_mac" {
                    self.cfg.trusted_macs = macs;
                } else {
                    self.cfg.blocked_macs = macs;
                }
            }
            "revoked" => {
                self.cfg.revoked = self.each(
                    opt,
                    "expected KEYID:SERIAL as `wifipos inspect` prints them, such as 1a2b3c4d:42",
                    |r| parse_revoked(r).ok_or_else(String::new),
                );
            }
            "max_connections" => {
                if let Some(n) = self.number(opt, 8, 65_536) {
                    self.cfg.max_connections = n as usize;
                }
            }
            "attempts_per_minute" => {
                if let Some(n) = self.number(opt, 1, 1000) {
                    self.cfg.attempts_per_minute = n as u32;
                }
            }
            "keep_days" => {
                if let Some(n) = self.number(opt, 1, 3650) {
                    self.cfg.keep_days = n as u32;
                }
            }
            "keep_event_days" => {
                if let Some(n) = self.number(opt, 1, 3650) {
                    self.cfg.keep_event_days = n as u32;
                }
            }
            "device_idle_replace" => {
                if let Some(n) = self.number(opt, 0, 1440) {
                    self.cfg.device_idle_replace_min = n as u32;
                }
            }
            "default_down_kbit" | "default_up_kbit" => {
                let rate = match self.one(opt) {
                    Some(item) if item.0.trim().is_empty() => None,
                    Some(_) => self.number(opt, 64, 10_000_000).map(|n| n as u32),
                    None => None,
                };
                if opt.name == "default_down_kbit" {
                    self.cfg.default_down_kbit = rate;
                } else {
                    self.cfg.default_up_kbit = rate;
                }
            }
            other => {
                let hint = KNOWN
                    .iter()
                    .find(|k| close(k, other))
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                self.warnings.push(Warning {
                    file: self.file.into(),
                    line: opt.items[0].1,
                    message: format!("unknown option '{other}' is ignored{hint}"),
                });
            }
        }
    }
}

/// One typo apart: a letter changed, added, removed, or two swapped.
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let s = a[p..]
        .iter()
        .rev()
        .zip(b[p..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ra, rb) = (a.len() - p - s, b.len() - p - s);
    match (ra, rb) {
        (0, 1) | (1, 0) | (1, 1) => true,
        (2, 2) => a[p] == b[p + 1] && a[p + 1] == b[p],
        _ => false,
    }
}

/// `192.0.2.5` (port `default_port`), `192.0.2.5:1813`, `2001:db8::5`, `[2001:db8::5]:1813`.
pub fn parse_radius_server(s: &str, default_port: u16) -> Option<std::net::SocketAddr> {
    let a = match s.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => std::net::SocketAddr::new(s.parse::<IpAddr>().ok()?, default_port),
    };
    (!a.ip().is_unspecified() && !a.ip().is_multicast() && a.port() != 0).then_some(a)
}

/// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`.
pub fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

/// A garden entry: a prefix whose host bits are zero (so what is written is what is allowed).
fn parse_garden(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = parse_prefix(s.trim()).ok_or_else(String::new)?;
    let masked = mask(addr, len);
    if masked != addr {
        return Err(format!(
            "the prefix has bits set after /{len}: write {masked}/{len} (or the single address without /{len})"
        ));
    }
    Ok((addr, len))
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    }
}

/// `1a2b3c4d:42`: a key id (8 hex digits) and a voucher serial (decimal).
pub fn parse_revoked(s: &str) -> Option<Revoked> {
    let (id, serial) = s.trim().split_once(':')?;
    Some(Revoked {
        key_id: KeyId::from_hex(id)?,
        serial: serial.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_config_is_valid_and_matches_the_defaults() {
        let r = check("default", DEFAULT_UCI);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.config, Config::default());
        assert_eq!(r.config.captive_api_url(), None);
    }

    #[test]
    fn masks_and_typos() {
        assert_eq!(
            mask("192.0.2.77".parse().unwrap(), 24),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("192.0.2.77".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert!(close("venue", "venu"));
        assert!(close("garden", "gardne"));
        assert!(close("trusted_key", "trusted_keys"));
        assert!(!close("venue", "language"));
    }
}
