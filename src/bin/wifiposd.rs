//! `wifiposd`: the router daemon and its admin commands. Thin: the work is in the library
//! (`daemon`, `config`, …).
//!
//! Exit codes: 0 success; 1 the config is invalid (`check-config`) or the daemon failed;
//! 2 bad arguments or an unreadable file.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use wifipos::daemon::{self, ServeOptions};

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
/// Print the RFC 8910 captive-portal API URL to hand out as DHCP option 114.
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
/// Print the version.
#[argh(subcommand, name = "version")]
struct Version {}

fn main() -> ExitCode {
    let cli: Cli = match wifipos::cli::parse("wifiposd") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.cmd {
        Cmd::Version(_) => {
            println!("wifiposd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig(c) => check_config(&c.config),
        Cmd::CaptiveUrl(c) => print_from_config(&c.config, |cfg| Ok(cfg.captive_api_url())),
        Cmd::Ruleset(c) => print_from_config(&c.config, |cfg| {
            wifipos::firewall::ruleset_script(&daemon::ruleset(cfg), &[]).map_err(|e| e.to_string())
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
