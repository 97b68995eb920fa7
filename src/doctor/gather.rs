//! The facts `wifiposd doctor` judges, read from the live router: config files under an `/etc`
//! (another folder for tests), the guest interface's addresses (rtnetlink), a conntrack read
//! over ctnetlink, kernel module lists, the running daemon's `status` (control socket) and a
//! write test of the database's folder. Reads only, except a scratch file it removes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Facts, Modules};
use crate::admin::Request;
use crate::config::{self, uci};
use crate::{conntrack, control, daemon, ifaddr};

/// Where to look.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config root: `ETC/config/wifipos`, `ETC/config/firewall`, ….
    pub etc: PathBuf,
    /// The control socket (default: the config's).
    pub socket: Option<PathBuf>,
}

fn package(etc: &Path, name: &str) -> Option<Result<uci::Package, String>> {
    let path = etc.join("config").join(name);
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("cannot read {}: {e}", path.display()))),
        Ok(text) => Some(uci::parse(&text).map_err(|e| e.to_string())),
    }
}

/// Module names the kernel has loaded, built in or available, if it lists any.
fn modules() -> Modules {
    let mut names = BTreeSet::new();
    let mut listed = false;
    let base = |s: &str| {
        let file = s.rsplit('/').next().unwrap_or(s);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    if let Ok(t) = std::fs::read_to_string("/proc/modules") {
        listed = true;
        names.extend(
            t.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(base),
        );
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release.trim());
    for f in ["modules.builtin", "modules.dep"] {
        if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
            listed = true;
            names.extend(
                t.lines()
                    .filter_map(|l| l.split(':').next())
                    .filter(|s| !s.is_empty())
                    .map(base),
            );
        }
    }
    // OpenWrt keeps its modules flat in /lib/modules/<release>/ without modules.dep.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(".ko") {
                listed = true;
                names.insert(base(&n));
            }
        }
    }
    Modules {
        names: listed.then_some(names),
    }
}

/// Whether the database (or, before its first start, its folder) can be written.
fn writable(db: &Path) -> Result<(), String> {
    // The daemon creates a missing folder: test the nearest one that exists.
    let mut dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => break,
        }
    }
    let scratch = dir.join(format!(".wifiposd-doctor-{}", std::process::id()));
    std::fs::write(&scratch, b"x")
        .and_then(|()| std::fs::remove_file(&scratch))
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    if db.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(db)
            .map_err(|e| format!("cannot open it for writing: {e}"))?;
    }
    Ok(())
}

/// Reads every fact.
pub fn gather(o: &Options) -> Facts {
    let path = o.etc.join("config").join("wifipos");
    let config = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|t| {
            config::parse(&path.display().to_string(), &t)
                .map(|(c, _)| c)
                .map_err(|e| e.to_string())
        })
        .map(|mut c| {
            // Unset portal_address: the interface's own, as the daemon takes it (a failure
            // shows in the guest-interface finding).
            let _ = daemon::resolve_portal_address(&mut c);
            c
        });
    let cfg = config.clone().unwrap_or_default();
    let iface = ifaddr::addresses_of(&cfg.guest_iface)
        .map(|a| a.into_iter().map(|a| a.ip).collect())
        .map_err(|e| e.to_string());
    let socket = o
        .socket
        .clone()
        .unwrap_or_else(|| cfg.control_socket.clone());
    let daemon = control::call(&socket, &Request::Status)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| format!("its answer is not understood: {e}"))
        });
    Facts {
        etc: o.etc.display().to_string(),
        config,
        iface,
        firewall: package(&o.etc, "firewall"),
        network: package(&o.etc, "network"),
        dhcp: package(&o.etc, "dhcp"),
        system: package(&o.etc, "system"),
        ctnetlink: conntrack::list()
            .map(|l| l.len())
            .map_err(|e| e.to_string()),
        modules: modules(),
        now: daemon::wall_now(),
        daemon,
        database: writable(&cfg.database),
    }
}
