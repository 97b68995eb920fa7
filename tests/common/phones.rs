//! Phones that act from inside the lab without a process per request: a thread that enters a
//! lab namespace, a keep-alive HTTP/1.1 client on std sockets, extra phone namespaces on the
//! router's guest bridge, and the kernel's `allowed` set as MAC strings.
//!
//! Include it with `#[path = "common/phones.rs"] mod phones;` next to `mod common;`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::common::lab::Lab;

/// The portal as the phones reach it.
pub const PORTAL_ADDR: &str = "10.20.0.1:2050";

/// Moves the calling thread into the network namespace `/run/netns/<ns>`: sockets it opens act
/// there. Only for threads the test spawned itself.
pub fn enter_ns(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// The namespace name of a lab host (`client`, `client2`, …, `router`, `upstream`).
pub fn ns_of(lab: &Lab, host: &str) -> String {
    format!("{}-{host}", lab.name)
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The refusal page's `data-reason="…"`, if this is one.
    pub fn reason(&self) -> Option<&str> {
        let start = self.body.find("data-reason=\"")? + "data-reason=\"".len();
        let len = self.body[start..].find('"')?;
        Some(&self.body[start..start + len])
    }

    /// The "You are online" page.
    pub fn online(&self) -> bool {
        self.status == 200 && self.body.contains("id=\"online\"")
    }

    /// `k / n` from the online page's devices line.
    pub fn devices(&self) -> Option<(u8, u8)> {
        let start = self.body.find("id=\"devices\">")? + "id=\"devices\">".len();
        let end = self.body[start..].find('<')? + start;
        let (k, n) = self.body[start..end].split_once(" / ")?;
        Some((k.trim().parse().ok()?, n.trim().parse().ok()?))
    }
}

/// A keep-alive HTTP/1.1 client for one server, reconnecting every `per_connection` requests
/// (the portal ends connections after 60 s) and after any error. Requests are never retried:
/// an error is returned, and whether the server acted on the request is unknown.
pub struct Http {
    addr: SocketAddr,
    host: String,
    conn: Option<(BufReader<TcpStream>, TcpStream)>,
    used: usize,
    pub per_connection: usize,
    pub timeout: Duration,
}

impl Http {
    pub fn new(addr: &str) -> Http {
        Http {
            addr: addr.parse().unwrap(),
            host: addr.to_owned(),
            conn: None,
            used: 0,
            per_connection: 100,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Reply> {
        self.send("GET", path, None)
    }

    /// POST of an `application/x-www-form-urlencoded` body.
    pub fn post_form(&mut self, path: &str, form: &str) -> io::Result<Reply> {
        self.send("POST", path, Some(form.as_bytes()))
    }

    fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        if self.used >= self.per_connection {
            self.conn = None;
        }
        let r = self.try_send(method, path, body);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn try_send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.conn = Some((BufReader::new(s.try_clone()?), s));
            self.used = 0;
        }
        self.used += 1;
        let (reader, writer) = self.conn.as_mut().unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept-Language: en\r\n",
            self.host
        )
        .into_bytes();
        if let Some(b) = body {
            req.extend_from_slice(
                format!(
                    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                    b.len()
                )
                .as_bytes(),
            );
        }
        req.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            req.extend_from_slice(b);
        }
        writer.write_all(&req)?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response ended",
                ));
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = crate::common::http_status(&head);
        let lower = head.to_ascii_lowercase();
        let len = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))?;
        let mut buf = vec![0; len];
        reader.read_exact(&mut buf)?;
        if lower.contains("connection: close") {
            self.conn = None;
        }
        Ok(Reply {
            status,
            head,
            body: String::from_utf8_lossy(&buf).into_owned(),
        })
    }
}

/// Percent-encodes every byte but `A–Z a–z 0–9 - . _ ~` (for paths and form values).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The MACs in the kernel's `allowed` set, lower case.
pub fn allowed_macs(lab: &Lab) -> BTreeSet<String> {
    let j = lab.nft_json();
    let set = j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["set"]["name"] == "allowed")
        .unwrap_or_else(|| panic!("no allowed set: {j}"));
    let mut macs = BTreeSet::new();
    collect_macs(&set["set"]["elem"], &mut macs);
    macs
}

fn collect_macs(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) if s.parse::<wifipos::mac::Mac>().is_ok() => {
            out.insert(s.to_ascii_lowercase());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_macs(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_macs(x, out)),
        _ => {}
    }
}

/// A phone of the lab: its namespace, IPv4 address and MAC.
#[derive(Debug, Clone)]
pub struct Phone {
    pub ns: String,
    pub ip: String,
    pub mac: String,
}

/// The lab's own four phones (`scripts/lab`).
pub fn lab_phones(lab: &Lab) -> Vec<Phone> {
    ["client", "client2", "client3", "client4"]
        .iter()
        .enumerate()
        .map(|(i, h)| Phone {
            ns: ns_of(lab, h),
            ip: format!("10.20.0.{}", 10 + i),
            mac: format!("02:00:00:00:00:{:02x}", 0x10 + i),
        })
        .collect()
}

/// More phones on the router's guest bridge, in namespaces of their own (`<lab>-p<i>`, IPv4
/// 10.20.0.(100+i), MAC 02:00:00:00:01:<i>); removed on drop. Leaves `scripts/lab` as it is.
pub struct ExtraPhones {
    pub phones: Vec<Phone>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ExtraPhones {
    pub fn add(lab: &Lab, n: usize) -> ExtraPhones {
        assert!(n <= 100);
        let router = ns_of(lab, "router");
        let mut extra = ExtraPhones { phones: Vec::new() };
        // A bridge takes the lowest MAC among its ports unless its own is set: pin the current
        // one, or the new ports could change it under the phones' neighbour caches.
        let out = Command::new("ip")
            .args(["-n", &router, "-j", "link", "show", "br-guest"])
            .output()
            .unwrap();
        let link: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let bridge_mac = link[0]["address"].as_str().unwrap().to_owned();
        ip(&[
            "-n",
            &router,
            "link",
            "set",
            "br-guest",
            "address",
            &bridge_mac,
        ]);
        for i in 0..n {
            let ns = format!("{}-p{i}", lab.name);
            let port = format!("gp{i}");
            let phone = Phone {
                ns: ns.clone(),
                ip: format!("10.20.0.{}", 100 + i),
                mac: format!("02:00:00:00:01:{i:02x}"),
            };
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            extra.phones.push(phone.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link", "add", &port, "netns", &router, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&[
                "-n", &router, "link", "set", &port, "master", "br-guest", "up",
            ]);
            ip(&[
                "-n", &ns, "link", "set", "eth0", "address", &phone.mac, "up",
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", phone.ip),
                "dev",
                "eth0",
            ]);
            ip(&[
                "-n",
                &ns,
                "-6",
                "addr",
                "add",
                &format!("fd20::1:{i:x}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            ip(&["-n", &ns, "route", "add", "default", "via", "10.20.0.1"]);
            ip(&["-n", &ns, "-6", "route", "add", "default", "via", "fd20::1"]);
        }
        extra
    }
}

impl Drop for ExtraPhones {
    fn drop(&mut self) {
        for p in &self.phones {
            let _ = Command::new("ip").args(["netns", "del", &p.ns]).output();
        }
    }
}

/// Opens the store's file read-only beside a running daemon (WAL lets both work).
pub fn read_db(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// `PRAGMA integrity_check` of a database file.
pub fn integrity(path: &std::path::Path) -> String {
    read_db(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// splitmix64: a small deterministic generator (same seed, same sequence).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}
