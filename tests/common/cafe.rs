//! A cafe for end-to-end tests: a lab (`scripts/lab`), a till key, a config file and
//! `wifiposd serve` in the router namespace. Include it with
//! `#[path = "common/cafe.rs"] mod cafe;` next to `mod common;` (it needs both binaries).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::lab::{self, Lab};

pub const WIFIPOS: &str = env!("CARGO_BIN_EXE_wifipos");
pub const WIFIPOSD: &str = env!("CARGO_BIN_EXE_wifiposd");
pub const PORTAL: &str = "http://10.20.0.1:2050";

/// `wifiposd serve` in the lab's router; killed (SIGKILL) on drop.
pub struct Daemon(pub Child);

impl Daemon {
    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cafe {
    pub dir: tempfile::TempDir,
    /// The till's private key file.
    pub key: String,
    /// `list trusted_key '…'` for the till's key.
    pub trusted: String,
    pub lab: Lab,
}

impl Cafe {
    /// A lab, a till key and a config (see [`Cafe::write_config`]); `None` when namespaces
    /// are not available (panics under `CI=true`, see [`lab::up`]).
    pub fn open(tag: &str) -> Option<Cafe> {
        let lab = lab::up(tag)?;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("till.pem").to_str().unwrap().to_owned();
        let out = Command::new(WIFIPOS)
            .args(["keygen", "--out", &key])
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let trusted = stdout
            .lines()
            .find(|l| l.contains("list trusted_key"))
            .unwrap()
            .trim()
            .to_owned();
        let cafe = Cafe {
            dir,
            key,
            trusted,
            lab,
        };
        cafe.write_config("");
        Some(cafe)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The control socket the config names.
    pub fn socket(&self) -> PathBuf {
        self.path("wifiposd.sock")
    }

    /// Writes the config: guest bridge `br-guest`, portal 10.20.0.1:2050, the database and
    /// control socket in the cafe's folder, the till's key, plus `extra` UCI lines (options of
    /// the same section, such as `\toption venue 'X'\n`).
    pub fn write_config(&self, extra: &str) {
        let config = format!(
            "config wifipos 'main'\n\
             \toption guest_iface 'br-guest'\n\
             \toption portal_address '10.20.0.1'\n\
             \toption portal_port '2050'\n\
             \toption database '{}'\n\
             \toption control_socket '{}'\n\
             \toption venue 'Café Test'\n\
             \t{}\n{extra}",
            self.path("wifipos.db").display(),
            self.socket().display(),
            self.trusted,
        );
        std::fs::write(self.path("wifipos.conf"), config).unwrap();
    }

    /// Starts the daemon and waits until the portal answers.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// [`Cafe::start`] with extra environment variables for the daemon.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let d = self.spawn(env);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.lab.curl("client", &[&format!("{PORTAL}/")]).0 == 200 {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("wifiposd did not come up: {}", self.log());
    }

    /// Starts the daemon without waiting; its stderr goes to `daemon.log` (appended).
    pub fn spawn(&self, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .unwrap();
        let mut cmd = self.lab.cmd("router", WIFIPOSD);
        cmd.args(["serve", "--config"])
            .arg(self.path("wifipos.conf"))
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon(cmd.spawn().unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Issues a voucher and returns its JSON (token, url, fields).
    pub fn issue(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec![
            "issue",
            "--key",
            &self.key,
            "--portal-url",
            PORTAL,
            "--format",
            "json",
        ];
        all.extend_from_slice(args);
        let out = Command::new(WIFIPOS).args(&all).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// An admin command (`wifiposd status`, …) against this cafe's daemon, from the host (the
    /// control socket is a file, not a network address).
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(WIFIPOSD)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap()
    }
}
