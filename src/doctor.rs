//! `wifiposd doctor`: is this router ready to sell Wi-Fi? Judges facts gathered from the live
//! router ([`gather`]) and says, for each check, what it found and how to fix it.
//!
//! Owns: the judging, pure: [`Facts`] in, [`Finding`]s out; the checks of OpenWrt's own
//! config (fw4, dnsmasq, network) are in `openwrt`. A finding that
//! keeps guests from the portal or from paying is [`Level::Blocks`]; `doctor` exits 1 then.

pub mod gather;
mod openwrt;

use std::net::IpAddr;

use serde::Serialize;

use crate::admin::Status;
use crate::config::uci::Package;
use crate::config::Config;
use crate::sessions::CLOCK_SANE_AFTER;
use openwrt::{dhcp, dns_name, firewall, firewall_coa, firewall_https, offloading, one};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Worth knowing; nothing to fix.
    Note,
    /// Something works worse than it should (guests still get online).
    Warn,
    /// Guests cannot reach the portal or get online.
    Blocks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Short name of the check: `config`, `guest-interface`, `firewall`, ….
    pub check: &'static str,
    pub level: Level,
    /// What was found, in a sentence.
    pub found: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Kernel features, from loaded/built-in/available module names where the router lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modules {
    /// `None`: this kernel does not list its modules (no /proc/modules, no /lib/modules).
    pub names: Option<std::collections::BTreeSet<String>>,
}

/// Everything `doctor` looks at, gathered beforehand.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Where the config files were read (`/etc` on the router).
    pub etc: String,
    /// `config/wifipos`, validated (the portal address resolved when unset and possible).
    pub config: Result<Config, String>,
    /// The guest interface's addresses; `Err` when it is missing or unreadable.
    pub iface: Result<Vec<IpAddr>, String>,
    /// `config/firewall`, `config/network`, `config/dhcp`, `config/system`: `None` when the
    /// file is missing, `Err` when it is not valid UCI.
    pub firewall: Option<Result<Package, String>>,
    pub network: Option<Result<Package, String>>,
    pub dhcp: Option<Result<Package, String>>,
    pub system: Option<Result<Package, String>>,
    /// Reading the conntrack table over ctnetlink: how many entries, or why not.
    pub ctnetlink: Result<usize, String>,
    pub modules: Modules,
    /// The wall clock (Unix seconds).
    pub now: i64,
    /// The running daemon's `status`, or why it cannot be asked.
    pub daemon: Result<Status, String>,
    /// Whether the database can be written, or why not.
    pub database: Result<(), String>,
}

fn finding(check: &'static str, level: Level, found: String, fix: Option<String>) -> Finding {
    Finding {
        check,
        level,
        found,
        fix,
    }
}

/// Judges every check.
pub fn judge(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let cfg = match &f.config {
        Ok(c) => c.clone(),
        Err(e) => {
            out.push(finding(
                "config",
                Level::Blocks,
                format!("{}/config/wifipos is not usable: {e}", f.etc),
                Some("run `wifiposd check-config` and correct what it names".into()),
            ));
            Config::default()
        }
    };
    if f.config.is_ok() {
        out.push(finding(
            "config",
            Level::Ok,
            format!("{}/config/wifipos is valid", f.etc),
            None,
        ));
    }
    out.push(guest_interface(f, &cfg));
    out.push(firewall(f, &cfg));
    out.extend(firewall_https(f, &cfg));
    out.extend(firewall_coa(f, &cfg));
    out.push(dhcp(f, &cfg));
    out.extend(dns_name(f, &cfg));
    out.push(offloading(f));
    out.push(clock(f));
    out.push(kernel(f));
    out.push(table(f, &cfg));
    out.push(database(f, &cfg));
    out
}

/// Whether anything blocks guests (exit 1).
pub fn blocks(findings: &[Finding]) -> bool {
    findings.iter().any(|x| x.level == Level::Blocks)
}

fn guest_interface(f: &Facts, cfg: &Config) -> Finding {
    let i = &cfg.guest_iface;
    let addrs = match &f.iface {
        Ok(a) => a,
        Err(e) => {
            return finding(
                "guest-interface",
                Level::Blocks,
                format!("the guest interface {i}: {e}"),
                Some(format!(
                    "set up the guest network (OpenWrt's guest Wi-Fi guide makes br-guest), or name its device in `option guest_iface` in {}/config/wifipos",
                    f.etc
                )),
            )
        }
    };
    let list = addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if addrs.contains(&cfg.portal_address) {
        let how = if cfg.portal_address_set {
            "as configured"
        } else {
            "taken from it"
        };
        finding(
            "guest-interface",
            Level::Ok,
            format!(
                "{i} exists and holds the portal address {} ({how})",
                cfg.portal_address
            ),
            None,
        )
    } else if !cfg.portal_address_set {
        finding(
            "guest-interface",
            Level::Blocks,
            format!("{i} has no IPv4 address, so the portal has none (it has: {list})"),
            Some(format!(
                "give the guest network an IPv4 address (network.guest.ipaddr), or set `option portal_address` in {}/config/wifipos",
                f.etc
            )),
        )
    } else {
        finding(
            "guest-interface",
            Level::Blocks,
            format!(
                "the portal address {} is not an address of {i} (it has: {}); phones cannot reach the portal",
                cfg.portal_address,
                if list.is_empty() { "none" } else { &list }
            ),
            Some(format!(
                "set `option portal_address` to one of {i}'s addresses, or remove it to use {i}'s own, in {}/config/wifipos",
                f.etc
            )),
        )
    }
}

fn clock(f: &Facts) -> Finding {
    let ntp_off = f
        .system
        .as_ref()
        .and_then(|p| p.as_ref().ok())
        .and_then(|p| p.sections.iter().find(|s| s.kind == "timeserver"))
        .is_some_and(|t| one(t, "enabled") == Some("0"));
    let heuristic = "counted as set when it reads after 2026-01-01 (before that it is surely stale) and the NTP client is enabled";
    if f.now < CLOCK_SANE_AFTER {
        finding(
            "clock",
            Level::Warn,
            format!("the clock is not set ({heuristic}): redemption deadlines are not enforced until NTP sets it"),
            Some("check the WAN connection and NTP: uci set system.ntp.enabled=1; uci commit system; /etc/init.d/sysntpd restart".into()),
        )
    } else if ntp_off {
        finding(
            "clock",
            Level::Warn,
            format!("the clock reads a plausible time but the NTP client is disabled ({heuristic}); it drifts"),
            Some("uci set system.ntp.enabled=1; uci commit system; /etc/init.d/sysntpd restart".into()),
        )
    } else {
        finding(
            "clock",
            Level::Ok,
            format!("the clock is set ({heuristic})"),
            None,
        )
    }
}

fn kernel(f: &Facts) -> Finding {
    let table_ok = f.daemon.as_ref().is_ok_and(|s| s.table == "intact");
    let needed: [(&str, &[&str], &str); 3] = [
        ("nft redirect", &["nft_redir", "nf_nat"], "kmod-nft-nat"),
        (
            "nft reject",
            &["nft_reject_inet", "nft_reject"],
            "kmod-nft-core",
        ),
        (
            "nft conntrack",
            &["nft_ct", "nf_conntrack"],
            "kmod-nft-core",
        ),
    ];
    let missing: Vec<(&str, &str)> = match &f.modules.names {
        Some(names) => needed
            .iter()
            .filter(|(_, mods, _)| !mods.iter().any(|m| names.contains(*m)))
            .map(|(what, _, pkg)| (*what, *pkg))
            .collect(),
        None => Vec::new(),
    };
    if table_ok {
        return finding(
            "kernel",
            Level::Ok,
            "the kernel has nft redirect, reject and conntrack (wifiposd's table with those rules is loaded)".into(),
            None,
        );
    }
    if !missing.is_empty() {
        let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        pkgs.dedup();
        return finding(
            "kernel",
            Level::Blocks,
            format!(
                "the kernel lacks {}",
                missing
                    .iter()
                    .map(|(w, _)| *w)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(format!("opkg install {}", pkgs.join(" "))),
        );
    }
    match &f.modules.names {
        Some(_) => finding(
            "kernel",
            Level::Ok,
            "the kernel has the modules for nft redirect, reject and conntrack".into(),
            None,
        ),
        None => finding(
            "kernel",
            Level::Note,
            "cannot tell whether the kernel has nft redirect/reject/conntrack (it lists no modules and wifiposd's table is not loaded)".into(),
            None,
        ),
    }
}

fn table(f: &Facts, cfg: &Config) -> Finding {
    let s = match &f.daemon {
        Ok(s) => s,
        Err(e) => {
            return finding(
                "daemon",
                Level::Blocks,
                format!("wifiposd does not answer: {e}"),
                Some("/etc/init.d/wifipos start; logread -e wifiposd says why it stopped".into()),
            )
        }
    };
    if s.table != "intact" {
        return finding(
            "daemon",
            Level::Blocks,
            format!(
                "wifiposd runs but its firewall table inet wifipos is {}",
                s.table
            ),
            Some("logread -e wifiposd; /etc/init.d/wifipos restart".into()),
        );
    }
    if s.guest_iface != cfg.guest_iface || s.portal_url != cfg.portal_url() {
        return finding(
            "daemon",
            Level::Warn,
            format!(
                "wifiposd runs with portal {} on {}, but the config says {} on {}",
                s.portal_url,
                s.guest_iface,
                cfg.portal_url(),
                cfg.guest_iface
            ),
            Some("/etc/init.d/wifipos restart".into()),
        );
    }
    finding(
        "daemon",
        Level::Ok,
        format!(
            "wifiposd runs; table inet wifipos intact for {} (portal {}); {} session(s)",
            s.guest_iface, s.portal_url, s.sessions
        ),
        None,
    )
}

fn database(f: &Facts, cfg: &Config) -> Finding {
    match &f.database {
        Ok(()) => finding(
            "database",
            Level::Ok,
            format!("the database {} is writable", cfg.database.display()),
            None,
        ),
        Err(e) => finding(
            "database",
            Level::Blocks,
            format!("the database {} cannot be written: {e}; no voucher can be redeemed", cfg.database.display()),
            Some(format!(
                "check free space (df -h) and that {} is on a writable filesystem, or set `option database`",
                cfg.database.parent().map_or("its folder".into(), |p| p.display().to_string())
            )),
        ),
    }
}

/// Findings as text for people: one line each, the fix indented below.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for x in findings {
        let tag = match x.level {
            Level::Ok => "ok    ",
            Level::Note => "note  ",
            Level::Warn => "WARN  ",
            Level::Blocks => "BLOCKS",
        };
        out.push_str(&format!("[{tag}] {}: {}\n", x.check, x.found));
        if let Some(fix) = &x.fix {
            out.push_str(&format!("         fix: {fix}\n"));
        }
    }
    let n = findings.iter().filter(|x| x.level == Level::Blocks).count();
    out.push_str(&if n == 0 {
        "Nothing keeps guests from the portal.\n".to_owned()
    } else {
        format!("{n} problem(s) keep guests from the portal or from getting online.\n")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uci;

    const FIREWALL: &str = "config defaults\n\toption input 'REJECT'\n\toption forward 'REJECT'\n\toption flow_offloading '1'\n\
config zone\n\toption name 'guest'\n\tlist network 'guest'\n\toption input 'REJECT'\n\toption forward 'REJECT'\n\
config rule\n\toption name 'Allow-DNS-Guest'\n\toption src 'guest'\n\toption dest_port '53'\n\toption target 'ACCEPT'\n";
    const PORTAL_RULE: &str = "config rule 'wifipos_portal'\n\toption name 'Allow-wifipos-portal'\n\toption src 'guest'\n\toption proto 'tcp'\n\toption dest_port '2050'\n\toption target 'ACCEPT'\n";
    const NETWORK: &str = "config interface 'guest'\n\toption device 'br-guest'\n\toption proto 'static'\n\toption ipaddr '10.20.0.1'\n";
    const HTTPS_RULE: &str = "config rule 'wifipos_https'\n\toption src 'guest'\n\toption proto 'tcp'\n\toption dest_port '443'\n\toption target 'ACCEPT'\n";
    const DHCP: &str = "config dnsmasq\n\tlist address '/wifi.cafe.example/10.20.0.1'\nconfig dhcp 'guest'\n\toption interface 'guest'\n\tlist dhcp_option '114,https://wifi.cafe.example/api/captive'\n";

    /// HTTPS on (the certificate files are not read by the doctor).
    fn https() -> Config {
        Config {
            portal_hostname: Some("wifi.cafe.example".into()),
            tls_cert: Some("/etc/ssl/w.crt".into()),
            tls_key: Some("/etc/ssl/w.key".into()),
            ..Config::default()
        }
    }

    fn pkg(t: &str) -> Option<Result<Package, String>> {
        Some(uci::parse(t).map_err(|e| e.to_string()))
    }

    fn status(table: &str) -> Status {
        Status {
            version: "0".into(),
            now: CLOCK_SANE_AFTER + 1,
            clock_trusted: true,
            uptime_s: 1,
            venue: "V".into(),
            portal_url: "https://wifi.cafe.example".into(),
            portal_address_from: None,
            guest_iface: "br-guest".into(),
            table: table.into(),
            sessions: 0,
            allowed_in_kernel: 0,
            trusted_macs: 0,
            blocked_macs: 0,
            keys: vec![],
            last_24h: Default::default(),
            clones: vec![],
            traffic: (0, 0),
            counts_downloads: true,
            speed_limited: 0,
            radius: None,
            radius_auth: None,
            radius_coa: None,
        }
    }

    fn good() -> Facts {
        Facts {
            etc: "/etc".into(),
            config: Ok(https()),
            iface: Ok(vec!["10.20.0.1".parse().unwrap()]),
            firewall: pkg(&format!("{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}")),
            network: pkg(NETWORK),
            dhcp: pkg(DHCP),
            system: None,
            ctnetlink: Ok(3),
            modules: Modules::default(),
            now: CLOCK_SANE_AFTER + 10,
            daemon: Ok(status("intact")),
            database: Ok(()),
        }
    }

    fn level(f: &Facts, check: &str) -> (Level, String) {
        let x = judge(f).into_iter().find(|x| x.check == check).unwrap();
        (x.level, format!("{} / {:?}", x.found, x.fix))
    }

    #[test]
    fn a_good_router_has_nothing_blocking() {
        let all = judge(&good());
        assert!(!blocks(&all), "{}", render(&all));
        assert!(all.iter().all(|x| x.level == Level::Ok), "{}", render(&all));
        assert!(render(&all).contains("Allow-wifipos-portal"));
    }

    #[test]
    fn disconnect_and_coa_need_the_wan_rule() {
        let mut f = good();
        assert!(
            judge(&f).iter().all(|x| x.check != "firewall-coa"),
            "off: no check"
        );
        let mut cfg = https();
        cfg.radius_server = Some("192.0.2.5:1813".parse().unwrap());
        cfg.radius_secret = "s".into();
        cfg.radius_coa_port = Some(3799);
        f.config = Ok(cfg);
        let wan =
            "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\toption input 'REJECT'\n";
        f.firewall = pkg(&format!("{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}{wan}"));
        let (l, text) = level(&f, "firewall-coa");
        assert_eq!(l, Level::Warn, "{text}");
        assert!(
            text.contains("UDP port 3799") && text.contains("wifipos-firewall add"),
            "{text}"
        );
        // The rule wifipos-firewall writes.
        let rule = "config rule 'wifipos_coa'\n\toption name 'Allow-wifipos-CoA'\n\toption src 'wan'\n\toption proto 'udp'\n\toption dest_port '3799'\n\tlist src_ip '192.0.2.5'\n\toption family 'ipv4'\n\toption target 'ACCEPT'\n";
        f.firewall = pkg(&format!("{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}{wan}{rule}"));
        let (l, text) = level(&f, "firewall-coa");
        assert_eq!(l, Level::Ok, "{text}");
        assert!(text.contains("Allow-wifipos-CoA"), "{text}");
        // Another port, or a TCP-only rule, does not count.
        for other in ["3800", "1700"] {
            f.firewall = pkg(&format!(
                "{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}{wan}{}",
                rule.replace("'3799'", &format!("'{other}'"))
            ));
            assert_eq!(level(&f, "firewall-coa").0, Level::Warn);
        }
        f.firewall = pkg(&format!(
            "{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}{wan}{}",
            rule.replace("'udp'", "'tcp'")
        ));
        assert_eq!(level(&f, "firewall-coa").0, Level::Warn);
        // No WAN zone at all.
        f.firewall = pkg(&format!("{FIREWALL}{PORTAL_RULE}{HTTPS_RULE}"));
        let (l, text) = level(&f, "firewall-coa");
        assert_eq!(l, Level::Warn);
        assert!(text.contains("no WAN zone"), "{text}");
    }

    #[test]
    fn the_portal_port_must_be_let_in_by_fw4() {
        let mut f = good();
        f.firewall = pkg(FIREWALL);
        let (l, text) = level(&f, "firewall");
        assert_eq!(l, Level::Blocks);
        assert!(
            text.contains("zone guest refuses the portal port 2050"),
            "{text}"
        );
        assert!(
            text.contains("/usr/libexec/wifipos-firewall add (it lets TCP port 2050"),
            "{text}"
        );
        // A port range, tcpudp and an anonymous rule do it too; a disabled rule or one for
        // another port or for IPv6 only does not.
        for (rule, ok) in [
            (
                "\toption dest_port '2000-2100'\n\toption proto 'tcpudp'\n",
                true,
            ),
            ("\toption dest_port '2050'\n\toption enabled '0'\n", false),
            ("\toption dest_port '2051'\n", false),
            ("\toption dest_port '2050'\n\toption family 'ipv6'\n", false),
            ("\toption dest_port '2050'\n\toption proto 'udp'\n", false),
            ("\toption dest_port '2050'\n\toption dest 'wan'\n", false),
        ] {
            f.firewall = pkg(&format!(
                "{FIREWALL}config rule\n\toption src 'guest'\n\toption target 'ACCEPT'\n{rule}"
            ));
            assert_eq!(level(&f, "firewall").0 == Level::Ok, ok, "{rule}");
        }
        // A zone accepting all input is fine; no zone at all under input REJECT is not.
        f.firewall = pkg("config zone\n\toption name 'guest'\n\toption device 'br-guest'\n\toption input 'ACCEPT'\n");
        assert_eq!(level(&f, "firewall").0, Level::Ok);
        f.firewall = pkg("config defaults\n\toption input 'REJECT'\n");
        assert_eq!(level(&f, "firewall").0, Level::Blocks);
        f.firewall = None;
        assert_eq!(level(&f, "firewall").0, Level::Note);
    }

    #[test]
    fn interface_dhcp_daemon_and_database_findings() {
        let mut f = good();
        f.iface = Ok(vec!["fd20::1".parse().unwrap()]);
        let (l, text) = level(&f, "guest-interface");
        assert_eq!(l, Level::Blocks);
        assert!(text.contains("br-guest has no IPv4 address"), "{text}");
        f.config = Ok(Config {
            portal_address_set: true,
            ..https()
        });
        let (l, text) = level(&f, "guest-interface");
        assert_eq!(l, Level::Blocks);
        assert!(
            text.contains("10.20.0.1 is not an address of br-guest"),
            "{text}"
        );
        f.iface = Err("there is no network interface called br-guest".into());
        assert_eq!(level(&f, "guest-interface").0, Level::Blocks);

        let mut f = good();
        f.dhcp = pkg("config dhcp 'guest'\n\toption interface 'guest'\n");
        let (l, text) = level(&f, "dhcp-114");
        assert_eq!(l, Level::Warn);
        assert!(
            text.contains(
                "uci add_list dhcp.guest.dhcp_option='114,https://wifi.cafe.example/api/captive'"
            ),
            "{text}"
        );
        f.dhcp = pkg("config dhcp 'guest'\n\toption interface 'guest'\n\tlist dhcp_option '114,http://10.9.9.9:2050/api/captive'\n");
        assert!(level(&f, "dhcp-114")
            .1
            .contains("points at http://10.9.9.9"));
        // Without HTTPS an http URL in option 114 is a mistake (phones ignore it); none is fine.
        f.config = Ok(Config::default());
        let (l, text) = level(&f, "dhcp-114");
        assert_eq!(l, Level::Warn);
        assert!(
            text.contains(
                "uci del_list dhcp.guest.dhcp_option='114,http://10.9.9.9:2050/api/captive'"
            ),
            "{text}"
        );
        f.dhcp = pkg("config dhcp 'guest'\n\toption interface 'guest'\n");
        assert_eq!(level(&f, "dhcp-114").0, Level::Note);
        assert!(judge(&f)
            .iter()
            .all(|x| x.check != "dns-name" && x.check != "firewall-https"));

        // HTTPS: dnsmasq must answer the portal's name with its address; fw4 must let 443 in.
        let mut f = good();
        f.dhcp = pkg("config dnsmasq\n\tlist address '/other.example/10.20.0.1'\n");
        let (l, text) = level(&f, "dns-name");
        assert_eq!(l, Level::Blocks);
        assert!(
            text.contains("uci add_list dhcp.@dnsmasq[0].address='/wifi.cafe.example/10.20.0.1'"),
            "{text}"
        );
        f.dhcp = pkg("config dnsmasq\n\tlist address '/wifi.cafe.example/10.9.9.9'\n");
        let (l, text) = level(&f, "dns-name");
        assert_eq!(l, Level::Blocks);
        assert!(
            text.contains("answers wifi.cafe.example with 10.9.9.9"),
            "{text}"
        );
        f.firewall = pkg(&format!("{FIREWALL}{PORTAL_RULE}"));
        let (l, text) = level(&f, "firewall-https");
        assert_eq!(l, Level::Blocks);
        assert!(text.contains("refuses the HTTPS portal port 443"), "{text}");

        let mut f = good();
        f.daemon = Err("cannot reach the daemon".into());
        assert_eq!(level(&f, "daemon").0, Level::Blocks);
        f.daemon = Ok(status("missing (rebuilt within a second)"));
        assert_eq!(level(&f, "daemon").0, Level::Blocks);
        f.database = Err("read-only file system".into());
        assert_eq!(level(&f, "database").0, Level::Blocks);
        assert!(blocks(&judge(&f)));
    }

    #[test]
    fn offloading_clock_and_kernel_findings() {
        let mut f = good();
        f.ctnetlink = Err("protocol not supported".into());
        let (l, text) = level(&f, "flow-offloading");
        assert_eq!(l, Level::Warn);
        assert!(text.contains("kmod-nf-conntrack-netlink"), "{text}");
        f.now = CLOCK_SANE_AFTER - 1;
        assert_eq!(level(&f, "clock").0, Level::Warn);
        f.now = CLOCK_SANE_AFTER + 1;
        f.system = pkg("config timeserver 'ntp'\n\toption enabled '0'\n");
        assert_eq!(level(&f, "clock").0, Level::Warn);
        // Without the daemon's table, the module list decides.
        f.daemon = Err("down".into());
        f.modules.names = Some(
            ["nf_conntrack", "nft_ct", "nft_reject_inet"]
                .map(String::from)
                .into(),
        );
        let (l, text) = level(&f, "kernel");
        assert_eq!(l, Level::Blocks);
        assert!(
            text.contains("nft redirect") && text.contains("kmod-nft-nat"),
            "{text}"
        );
        f.modules.names = None;
        assert_eq!(level(&f, "kernel").0, Level::Note);
    }
}
