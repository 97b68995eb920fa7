//! `wifiposd`: the router daemon and its admin commands. Thin: the work is in the library
//! (`daemon`, `config`, …).
//!
//! Exit codes: 0 success; 1 the config is invalid (`check-config`), the daemon failed, or it
//! refused an admin command (unknown device, revoked voucher, …); 2 bad arguments or an
//! unreadable file; 3 the daemon cannot be reached (admin commands).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;
use wifipos::admin::Request;
use wifipos::admin::{self, text, RuleName, SessionLine};
use wifipos::control;
use wifipos::daemon::{self, ServeOptions};
use wifipos::store::Event;

use wifipos::config;

const DEFAULT_CONFIG: &str = config::DEFAULT_PATH;

#[derive(FromArgs)]
/// The wifipos router daemon: captive portal, voucher verification, nftables sessions.
struct Cli {
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Serve(Serve),
    CheckConfig(CheckConfig),
    CaptiveUrl(CaptiveUrl),
    Ruleset(RulesetCmd),
    Version(Version),
    BenchVerify(BenchVerify),
    Doctor(Doctor),
    Status(Status),
    Sessions(SessionsCmd),
    Vouchers(VouchersCmd),
    Revoke(Revoke),
    Kick(Kick),
    Extend(Extend),
    Trust(Trust),
    Untrust(Untrust),
    Block(Block),
    Unblock(Unblock),
    Events(Events),
}

#[derive(FromArgs)]
/// Run the portal and keep the firewall in step with the session store (procd starts this).
#[argh(subcommand, name = "serve")]
struct Serve {
    /// the UCI config file (default /etc/config/wifipos)
    #[argh(option, default = "PathBuf::from(DEFAULT_CONFIG)")]
    config: PathBuf,
    /// laptop mode: no root, 127.0.0.1, in-memory firewall, temporary database; uses the
    /// embedded default config unless --config is given
    #[argh(switch)]
    dev: bool,
    /// listen on this port instead of the configured one
    #[argh(option)]
    port: Option<u16>,
}

#[derive(FromArgs)]
/// Check the config file and print every problem with its line: exit 0 if it is valid (warnings
/// allowed), 1 if it is invalid, 2 if it cannot be read.
#[argh(subcommand, name = "check-config")]
struct CheckConfig {
    /// the UCI config file (default /etc/config/wifipos)
    #[argh(option, default = "PathBuf::from(DEFAULT_CONFIG)")]
    config: PathBuf,
}

#[derive(FromArgs)]
/// Print the RFC 8910 captive-portal API URL to hand out as DHCP option 114 (https only: without
/// TLS configured it prints nothing and exits 1).
#[argh(subcommand, name = "captive-url")]
struct CaptiveUrl {
    /// the UCI config file (default /etc/config/wifipos)
    #[argh(option, default = "PathBuf::from(DEFAULT_CONFIG)")]
    config: PathBuf,
}

#[derive(FromArgs)]
/// Print the nftables table wifiposd installs for this config, as nft text (for reading; the
/// daemon installs it over netlink).
#[argh(subcommand, name = "ruleset")]
struct RulesetCmd {
    /// the UCI config file (default /etc/config/wifipos)
    #[argh(option, default = "PathBuf::from(DEFAULT_CONFIG)")]
    config: PathBuf,
}

#[derive(FromArgs)]
/// Check the live router: guest interface and portal address, fw4 letting the portal port in,
/// DHCP option 114, flow offloading, clock, kernel features, the daemon's table, the database.
/// Prints each finding with its fix; exit 1 when something keeps guests out, else 0.
#[argh(subcommand, name = "doctor")]
struct Doctor {
    /// print the findings as JSON
    #[argh(switch)]
    json: bool,
    /// the config root holding config/wifipos, config/firewall, … (default /etc)
    #[argh(option, default = "PathBuf::from(\"/etc\")")]
    etc: PathBuf,
    /// the daemon's control socket (default: the config's control_socket)
    #[argh(option)]
    socket: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Print the version.
#[argh(subcommand, name = "version")]
struct Version {}

#[derive(FromArgs)]
/// Measure voucher signature checks on this CPU: sign one voucher with a throwaway key, verify
/// it ROUNDS times and print the rate (scripts/check-routers compares router CPUs under qemu).
#[argh(subcommand, name = "bench-verify")]
struct BenchVerify {
    /// how many verifications (default 2000)
    #[argh(positional, default = "2000")]
    rounds: u32,
}

/// An admin subcommand: its own arguments, then `--json`, `--socket` and `--config`.
macro_rules! admin_cmd {
    ($name:ident, $cmd:literal, $doc:literal { $($field:tt)* }) => {
        #[derive(FromArgs)]
        #[doc = $doc]
        #[argh(subcommand, name = $cmd)]
        struct $name {
            $($field)*
            /// print the daemon's answer as JSON (for scripts)
            #[argh(switch)]
            json: bool,
            /// the daemon's control socket (default: the config's control_socket)
            #[argh(option)]
            socket: Option<PathBuf>,
            /// the UCI config file that names the control socket (default /etc/config/wifipos)
            #[argh(option, default = "PathBuf::from(DEFAULT_CONFIG)")]
            config: PathBuf,
        }

        impl $name {
            fn endpoint(&self) -> (bool, PathBuf) {
                (self.json, socket_path(self.socket.as_deref(), &self.config))
            }
        }
    };
}

admin_cmd!(Status, "status", "Show the running daemon: uptime, firewall table, sessions, keys, \
    the last 24 hours." {});
admin_cmd!(SessionsCmd, "sessions", "List the devices with time left: voucher, end, time left \
    in the database and in the kernel." {});
admin_cmd!(VouchersCmd, "vouchers", "List the vouchers used most recently, with their devices." {
    /// how many (default 50)
    #[argh(option, default = "50")]
    limit: usize,
});
admin_cmd!(Revoke, "revoke", "Revoke a voucher (KEYID:SERIAL, or its code or link), every \
    voucher a device (MAC) holds, or every voucher of a till key (KEYID): their devices go back \
    to the portal at once." {
    /// what to revoke
    #[argh(positional)]
    target: String,
});
admin_cmd!(Kick, "kick", "Take a device off its vouchers: its slot is free for another \
    device and it goes back to the portal." {
    /// the device's MAC address
    #[argh(positional)]
    mac: String,
});
admin_cmd!(Extend, "extend", "Add time to a voucher in use (KEYID:SERIAL, or its code or link); \
    all its devices get it." {
    /// the voucher
    #[argh(positional)]
    voucher: String,
    /// how much time to add, such as 30m, 2h or 1d
    #[argh(positional)]
    duration: String,
});
admin_cmd!(Trust, "trust", "Let a device (staff) online without a voucher." {
    /// the device's MAC address
    #[argh(positional)]
    mac: String,
});
admin_cmd!(Untrust, "untrust", "Undo `trust`." {
    /// the device's MAC address
    #[argh(positional)]
    mac: String,
});
admin_cmd!(Block, "block", "Refuse a device everything, even with a voucher." {
    /// the device's MAC address
    #[argh(positional)]
    mac: String,
});
admin_cmd!(Unblock, "unblock", "Undo `block`." {
    /// the device's MAC address
    #[argh(positional)]
    mac: String,
});
admin_cmd!(Events, "events", "Show the event log: redemptions, refusals, revocations, …" {
    /// from when: a duration ago (2h, 7d), a UTC date (2026-11-25 or 2026-11-25T14:30) or Unix
    /// seconds (default 24h)
    #[argh(option, default = "String::from(\"24h\")")]
    since: String,
    /// at most this many (default 500)
    #[argh(option, default = "500")]
    limit: usize,
});

/// The control socket: `--socket`, else the config's `control_socket`, else the default.
fn socket_path(explicit: Option<&Path>, config: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    match wifipos::config::load(config) {
        Ok(r) if r.errors.is_empty() => r.config.control_socket,
        _ => PathBuf::from(wifipos::config::DEFAULT_CONTROL_SOCKET),
    }
}

fn rule(mac: String, rule: RuleName, on: bool) -> Request {
    Request::Rule { mac, rule, on }
}

fn main() -> ExitCode {
    // The daemon's photo decoder runs as a child of itself (not a documented command).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(wifipos::portal::photo::CHILD_ARG) {
        return wifipos::portal::photo::child_main(&args[1..]);
    }
    let cli: Cli = match wifipos::cli::parse("wifiposd") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let ((json, socket), req) = match cli.cmd {
        Cmd::Status(c) => (c.endpoint(), Request::Status),
        Cmd::Sessions(c) => (c.endpoint(), Request::Sessions),
        Cmd::Vouchers(c) => (c.endpoint(), Request::Vouchers { limit: c.limit }),
        Cmd::Revoke(c) => (c.endpoint(), Request::Revoke { target: c.target }),
        Cmd::Kick(c) => (c.endpoint(), Request::Kick { mac: c.mac }),
        Cmd::Extend(c) => (
            c.endpoint(),
            Request::Extend {
                voucher: c.voucher,
                duration: c.duration,
            },
        ),
        Cmd::Trust(c) => (c.endpoint(), rule(c.mac, RuleName::Trusted, true)),
        Cmd::Untrust(c) => (c.endpoint(), rule(c.mac, RuleName::Trusted, false)),
        Cmd::Block(c) => (c.endpoint(), rule(c.mac, RuleName::Blocked, true)),
        Cmd::Unblock(c) => (c.endpoint(), rule(c.mac, RuleName::Blocked, false)),
        Cmd::Events(c) => (
            c.endpoint(),
            Request::Events {
                since: c.since,
                limit: c.limit,
            },
        ),
        other => return run(other),
    };
    admin(json, &socket, &req)
}

/// `wifiposd bench-verify`: verifications per second of one signed voucher.
fn bench_verify(rounds: u32) -> ExitCode {
    use wifipos::keys::{KeyId, Keyring};
    use wifipos::voucher::{self, Voucher};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let ring = Keyring::new([key.verifying_key()]);
    let voucher = Voucher {
        key_id: KeyId::of(&key.verifying_key()),
        serial: 1,
        issued_at: 1,
        redeem_by: 0,
        duration_s: 3600,
        max_devices: 3,
        purchase_ref: "BENCH".into(),
        ext: None,
    };
    let token = match voucher.sign(&key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wifiposd: cannot sign the benchmark voucher: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rounds = rounds.max(1);
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        if let Err(e) = voucher::verify(&token, &ring) {
            eprintln!("wifiposd: the benchmark voucher did not verify: {e}");
            return ExitCode::FAILURE;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{rounds} verifications in {s:.3} s: {:.0} verifications/s",
        f64::from(rounds) / s
    );
    ExitCode::SUCCESS
}

/// Sends an admin request and prints the answer: as text, or as JSON with `--json`.
fn admin(json: bool, socket: &Path, req: &Request) -> ExitCode {
    let answer = admin::validate(req).and_then(|()| control::call(socket, req));
    let value = match answer {
        Ok(v) => v,
        Err(e) => {
            if json {
                let _ = writeln!(std::io::stdout(), "{}", serde_json::json!({ "error": e }));
            }
            eprintln!("wifiposd: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let text = if json {
        Ok(format!("{value}\n"))
    } else {
        render(req, value)
    };
    match text {
        Ok(t) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(t.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wifiposd: the daemon's answer is not understood ({e}); are wifiposd and this command the same version?");
            ExitCode::from(1)
        }
    }
}

fn render(req: &Request, v: serde_json::Value) -> Result<String, serde_json::Error> {
    use serde_json::from_value as from;
    Ok(match req {
        Request::Status => text::status(&from(v)?),
        Request::Sessions => text::sessions(&from::<Vec<SessionLine>>(v)?),
        Request::Vouchers { .. } => text::vouchers(&from(v)?),
        Request::Events { .. } => text::events(&from::<Vec<Event>>(v)?),
        _ => text::done(&from(v)?),
    })
}

fn run(cmd: Cmd) -> ExitCode {
    match cmd {
        Cmd::Version(_) => {
            println!("wifiposd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::BenchVerify(b) => bench_verify(b.rounds),
        Cmd::CheckConfig(c) => check_config(&c.config),
        Cmd::Doctor(d) => {
            use wifipos::doctor;
            let facts = doctor::gather::gather(&doctor::gather::Options {
                etc: d.etc,
                socket: d.socket,
            });
            let findings = doctor::judge(&facts);
            let out = if d.json {
                serde_json::to_string_pretty(&findings).unwrap_or_default() + "\n"
            } else {
                doctor::render(&findings)
            };
            let _ = std::io::stdout().write_all(out.as_bytes());
            if doctor::blocks(&findings) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::CaptiveUrl(c) => print_from_config(&c.config, |cfg| {
            cfg.captive_api_url().ok_or_else(|| {
                "no captive-portal API URL: phones accept only an https one, so set option portal_hostname, tls_cert and tls_key in /etc/config/wifipos first".to_owned()
            })
        }),
        Cmd::Ruleset(c) => print_from_config(&c.config, |cfg| {
            wifipos::firewall::ruleset_script(&wifipos::sessions::ruleset(cfg, &[]), &[])
                .map_err(|e| e.to_string())
        }),
        Cmd::Serve(s) => {
            let explicit = std::env::args().any(|a| a == "--config");
            let path = (!s.dev || explicit).then_some(s.config);
            let result = daemon::load_config(path.as_deref()).and_then(|cfg| {
                daemon::serve(
                    cfg,
                    ServeOptions {
                        config_path: path,
                        dev: s.dev,
                        port: s.port,
                    },
                )
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wifiposd: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => unreachable!("admin commands are handled in main"),
    }
}

/// `check-config`: every warning and error of the file, then a one-line verdict.
fn check_config(path: &std::path::Path) -> ExitCode {
    let report = match config::load(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wifiposd: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if report.errors.is_empty() {
        let cfg = &report.config;
        println!(
            "{}: OK (portal {}, guest device {}, {} trusted key(s))",
            path.display(),
            cfg.portal_url(),
            cfg.guest_iface,
            cfg.trusted_keys.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{}: {} error(s); nothing was changed",
            path.display(),
            report.errors.len()
        );
        ExitCode::from(1)
    }
}

/// Loads the config and prints what `render` makes of it; exit 1 with the reason otherwise.
fn print_from_config(
    path: &std::path::Path,
    render: impl FnOnce(&wifipos::config::Config) -> Result<String, String>,
) -> ExitCode {
    match daemon::load_config(Some(path))
        .map_err(|e| e.to_string())
        .and_then(|cfg| render(&cfg))
    {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wifiposd: {e}");
            ExitCode::from(1)
        }
    }
}
