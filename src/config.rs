//! `/etc/config/wifipos`: the UCI file format, and the typed, validated settings of the daemon.
//!
//! Owns: parsing UCI text (`config TYPE 'name'`, `option`, `list`, quoting, escapes, comments)
//! into sections, and turning the `wifipos` section into [`Config`] with defaults, warnings for
//! unknown options, and errors that name the file, line, option and what is allowed. Pure: the
//! caller reads the file.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::keys;
use crate::mac::Mac;

/// The documented default config, as shipped in the package.
pub const DEFAULT_UCI: &str = include_str!("../files/etc/config/wifipos");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub name: Option<String>,
    pub line: usize,
    /// `(name, values, line)`; an `option` has one value, a `list` line adds one.
    pub options: Vec<(String, Vec<String>, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Splits a UCI line into words, honouring '…' and "…" quotes (adjacent parts join) and
/// backslash escapes outside single quotes. A `#` outside quotes starts a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses UCI text into sections.
pub fn parse_uci(file: &str, text: &str) -> Result<Vec<Section>, ConfigError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ConfigError {
            file: file.to_owned(),
            line,
            message,
        };
        let w = words(raw.trim_end_matches('\r')).map_err(err)?;
        let Some(first) = w.first() else { continue };
        match (first.as_str(), w.len()) {
            ("config", 2 | 3) => sections.push(Section {
                kind: w[1].clone(),
                name: w.get(2).cloned(),
                line,
                options: Vec::new(),
            }),
            ("config", _) => return Err(err("'config' takes a type and an optional name".into())),
            ("option" | "list", 3) => {
                let Some(s) = sections.last_mut() else {
                    return Err(err(format!("'{first}' before any 'config' section")));
                };
                let (name, value) = (w[1].clone(), w[2].clone());
                if first == "list" {
                    if let Some(o) = s.options.iter_mut().find(|o| o.0 == name) {
                        o.1.push(value);
                        continue;
                    }
                } else {
                    s.options.retain(|o| o.0 != name);
                }
                s.options.push((name, vec![value], line));
            }
            ("option" | "list", _) => {
                return Err(err(format!("'{first}' takes a name and one value")))
            }
            ("package", 2) => {}
            _ => return Err(err(format!("unknown statement '{first}'"))),
        }
    }
    Ok(sections)
}

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub guest_iface: String,
    pub portal_address: IpAddr,
    pub portal_port: u16,
    pub database: PathBuf,
    pub venue: String,
    pub language: String,
    pub trusted_keys: Vec<String>,
    /// IPv4/IPv6 addresses or prefixes reachable before paying, as `(address, prefix length)`.
    pub garden: Vec<(IpAddr, u8)>,
    pub trusted_macs: Vec<Mac>,
    pub blocked_macs: Vec<Mac>,
    pub max_connections: usize,
    pub attempts_per_minute: u32,
    pub keep_days: u32,
}

impl Config {
    /// The URL customers see, also printed in the QR codes: `http://ADDR:PORT`.
    pub fn portal_url(&self) -> String {
        match self.portal_address {
            IpAddr::V6(a) => format!("http://[{a}]:{}", self.portal_port),
            IpAddr::V4(a) => format!("http://{a}:{}", self.portal_port),
        }
    }

    /// The RFC 8910 captive-portal API URI to hand out as DHCP option 114.
    pub fn captive_api_url(&self) -> String {
        format!("{}/api/captive", self.portal_url())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            guest_iface: "br-guest".into(),
            portal_address: IpAddr::from([10, 20, 0, 1]),
            portal_port: 2050,
            database: "/etc/wifipos/wifipos.db".into(),
            venue: "Wi-Fi".into(),
            language: "en".into(),
            trusted_keys: Vec::new(),
            garden: Vec::new(),
            trusted_macs: Vec::new(),
            blocked_macs: Vec::new(),
            max_connections: 512,
            attempts_per_minute: 10,
            keep_days: 90,
        }
    }
}

/// Parses and validates a config file's text. Returns the config and warnings (unknown
/// options), or the first error.
pub fn parse(file: &str, text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    let sections = parse_uci(file, text)?;
    let mut cfg = Config::default();
    let mut warnings = Vec::new();
    let Some(s) = sections.iter().find(|s| s.kind == "wifipos") else {
        return Err(ConfigError {
            file: file.into(),
            line: 1,
            message: "no 'config wifipos' section".into(),
        });
    };
    for (name, values, line) in &s.options {
        let err = |allowed: &str| ConfigError {
            file: file.into(),
            line: *line,
            message: format!(
                "option '{name}': '{}' is not valid; {allowed}",
                values.join(" ")
            ),
        };
        let one = values.last().map(String::as_str).unwrap_or("");
        let number = |lo: u64, hi: u64| -> Result<u64, ConfigError> {
            one.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| err(&format!("expected a whole number from {lo} to {hi}")))
        };
        match name.as_str() {
            "guest_iface" => {
                if one.is_empty() || one.len() > 15 || one.contains(['/', ' ']) {
                    return Err(err("expected a network device name such as br-guest"));
                }
                cfg.guest_iface = one.into();
            }
            "portal_address" => {
                cfg.portal_address = one.parse().map_err(|_| {
                    err("expected the router's IPv4 or IPv6 address on the guest network")
                })?
            }
            "portal_port" => cfg.portal_port = number(1, 65535)? as u16,
            "database" => {
                if !one.starts_with('/') {
                    return Err(err("expected an absolute path"));
                }
                cfg.database = one.into();
            }
            "venue" => cfg.venue = one.into(),
            "language" => {
                if crate_lang(one).is_none() {
                    return Err(err("expected en, de or es"));
                }
                cfg.language = one.into();
            }
            "trusted_key" => {
                for k in values {
                    keys::parse_public_key(k).map_err(|e| ConfigError {
                        file: file.into(),
                        line: *line,
                        message: format!("option 'trusted_key': {e}"),
                    })?;
                }
                cfg.trusted_keys = values.clone();
            }
            "garden" => {
                cfg.garden = values
                    .iter()
                    .map(|g| parse_prefix(g))
                    .collect::<Option<_>>()
                    .ok_or_else(|| err("expected IP addresses or prefixes like 192.0.2.0/24"))?
            }
            "trusted_mac" | "blocked_mac" => {
                let macs = values
                    .iter()
                    .map(|m| m.parse::<Mac>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| err("expected MAC addresses like aa:bb:cc:dd:ee:ff"))?;
                if name == "trusted_mac" {
                    cfg.trusted_macs = macs;
                } else {
                    cfg.blocked_macs = macs;
                }
            }
            "max_connections" => cfg.max_connections = number(8, 65_536)? as usize,
            "attempts_per_minute" => cfg.attempts_per_minute = number(1, 1000)? as u32,
            "keep_days" => cfg.keep_days = number(1, 3650)? as u32,
            _ => warnings.push(format!("{file}:{line}: unknown option '{name}' is ignored")),
        }
    }
    Ok((cfg, warnings))
}

fn crate_lang(code: &str) -> Option<()> {
    matches!(code, "en" | "de" | "es").then_some(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_config_is_valid() {
        let (cfg, warnings) = parse("default", DEFAULT_UCI).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.portal_url(), "http://10.20.0.1:2050");
    }

    #[test]
    fn quoting_escapes_lists_comments_and_crlf() {
        let text = "# top\r\nconfig wifipos 'main'\r\n\toption venue 'Caf\u{e9} \"Nord\"' # c\n\toption x \"a\\\"b\"'c'\n\tlist garden 192.0.2.0/24\n\tlist garden '2001:db8::/32'\n";
        let s = parse_uci("t", text).unwrap();
        assert_eq!(s[0].options[0].1, vec!["Caf\u{e9} \"Nord\""]);
        assert_eq!(s[0].options[1].1, vec!["a\"bc"]);
        assert_eq!(s[0].options[2].1.len(), 2);
        let (cfg, w) = parse("t", text).unwrap();
        assert_eq!(cfg.garden.len(), 2);
        assert_eq!(w, vec!["t:4: unknown option 'x' is ignored"]);
    }

    #[test]
    fn errors_name_the_file_line_option_and_what_is_allowed() {
        let e = parse(
            "/etc/config/wifipos",
            "config wifipos\n\toption portal_port 99999\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/config/wifipos:2: option 'portal_port': '99999' is not valid; expected a whole number from 1 to 65535"
        );
        let e = parse_uci("f", "option a b\n").unwrap_err();
        assert_eq!(e.to_string(), "f:1: 'option' before any 'config' section");
        let e = parse_uci("f", "config x\n option a 'b\n").unwrap_err();
        assert_eq!(e.to_string(), "f:2: unterminated ' quote");
        let e = parse("f", "config wifipos\n list trusted_key 'abc'\n").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("f:2: option 'trusted_key': 'abc' is not a public key"));
    }
}
