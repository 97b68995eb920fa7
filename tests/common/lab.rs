//! The cafe in network namespaces (`scripts/lab`), as a guard that tears it down on drop.
//!
//! Needs root and `ip netns`. Where they are missing the test says so loudly and skips; under
//! `CI=true` it fails instead, so a CI run can never pass by testing nothing.

use std::process::{Command, Output};

pub struct Lab {
    pub name: String,
}

fn root_dir() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// Brings a lab up, or returns `None` (skip) when this machine cannot; panics under CI.
pub fn up(tag: &str) -> Option<Lab> {
    let name = format!("wp{}{}", tag, std::process::id() % 100_000);
    let out = Command::new(format!("{}/scripts/lab", root_dir()))
        .args(["up", &name])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Lab { name }),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            let _ = Command::new(format!("{}/scripts/lab", root_dir()))
                .args(["down", &name])
                .status();
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("network namespaces are required under CI=true (run as root): {why}");
            }
            eprintln!("SKIPPED: cannot create network namespaces (needs root): {why}");
            None
        }
    }
}

impl Lab {
    /// A command inside one of the lab's hosts: client, client2..4, router, upstream.
    pub fn cmd(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{host}", self.name), program]);
        c
    }

    pub fn run(&self, host: &str, program: &str, args: &[&str]) -> Output {
        self.cmd(host, program)
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// `curl` from a host: returns (HTTP status or 0, headers and body).
    pub fn curl(&self, host: &str, args: &[&str]) -> (u16, String) {
        let mut all = vec!["-s", "-i", "-m", "5"];
        all.extend_from_slice(args);
        let out = self.run(host, "curl", &all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (super::http_status(&text), text)
    }
}

impl Lab {
    /// HTTP status of `GET :8080/generate_204` on the upstream from a phone, over IPv4 or IPv6
    /// (0 = refused or timed out).
    pub fn internet(&self, phone: &str, v6: bool) -> u16 {
        let url = if v6 {
            "http://[fd99::2]:8080/generate_204"
        } else {
            "http://10.99.0.2:8080/generate_204"
        };
        self.curl(phone, &["-m", "3", url]).0
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(format!("{}/scripts/lab", root_dir()))
            .args(["down", &self.name])
            .status();
    }
}

impl Lab {
    /// Moves the calling thread into the lab's router namespace: netlink sockets it opens and
    /// processes it starts (such as `nft`) act there. Use from a test's own thread only.
    pub fn enter_router(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}-router", self.name)).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// The kernel's `allowed` set inside the router: MAC (lowercase) → seconds until its
    /// element expires; `None` when it cannot be listed (no table).
    pub fn allowed_set(&self) -> Option<std::collections::HashMap<String, u64>> {
        let out = self.run(
            "router",
            "nft",
            &["-j", "list", "set", "inet", "wifipos", "allowed"],
        );
        if !out.status.success() {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let mut found = std::collections::HashMap::new();
        fn walk(v: &serde_json::Value, found: &mut std::collections::HashMap<String, u64>) {
            match v {
                serde_json::Value::Object(o) => {
                    if let (Some(val), Some(exp)) = (o.get("val"), o.get("expires")) {
                        found.insert(
                            val.as_str().unwrap_or_default().to_ascii_lowercase(),
                            exp.as_u64().unwrap_or(0),
                        );
                    }
                    o.values().for_each(|x| walk(x, found));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
                _ => {}
            }
        }
        walk(&json, &mut found);
        Some(found)
    }

    /// `nft -j list table inet wifipos` inside the router, parsed.
    pub fn nft_json(&self) -> serde_json::Value {
        let out = self.run("router", "nft", &["-j", "list", "table", "inet", "wifipos"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}
