//! Issue 18's attacks by a hostile guest, performed in the lab against the running daemon: a
//! photo that stalls the QR decoder, slow uploads that exhaust memory, and invented MACs that
//! fill the attempt limiter. Each test shows that during the attack other guests get their
//! pages, a real customer redeems a valid voucher within 2 s, and the admin still gets answers.
//! Needs root and network namespaces (fails under `CI=true` without them).

#[path = "common/cafe.rs"]
mod cafe;
mod common;
#[path = "common/phones.rs"]
mod phones;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cafe::{Cafe, Daemon, PORTAL, WIFIPOSD};
use phones::{Http, PORTAL_ADDR};

/// The attacks run one at a time: each needs the machine's CPU to show what it shows.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The memory the daemon must stay under while attacked (router build goal: 32 MB).
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// A grid of QR finder patterns (7×7 modules of `m` px, `gap` px apart) on white: every one
/// is a capstone to rqrr, whose grouping cost explodes with their number.
fn finder_grid(side: usize, m: usize, gap: usize) -> Vec<u8> {
    let mut px = vec![255u8; side * side];
    let p = 7 * m + gap;
    for y in 0..side {
        for x in 0..side {
            let (cx, cy) = (x % p, y % p);
            if cx >= 7 * m || cy >= 7 * m || x / p * p + 7 * m > side || y / p * p + 7 * m > side {
                continue;
            }
            let (mx, my) = (cx / m, cy / m);
            if mx.min(my).min(6 - mx).min(6 - my) != 1 {
                px[y * side + x] = 0;
            }
        }
    }
    px
}

/// VmRSS of a process in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn alive(d: &mut Daemon) -> bool {
    d.0.try_wait().unwrap().is_none()
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        phones::enter_ns(&ns);
        f()
    })
    .join()
    .unwrap()
}

/// A fresh voucher's link path (`/v/…`).
fn voucher_path(cafe: &Cafe) -> String {
    let v = cafe.issue(&["--duration", "1h"]);
    let url = v["url"].as_str().unwrap();
    url.strip_prefix(PORTAL).unwrap().to_owned()
}

/// A customer opens a voucher link from `ns`: (online?, time taken, status).
fn customer_redeems(ns: &str, path: String) -> (bool, Duration, u16) {
    in_ns(ns, move || {
        let mut http = Http::new(PORTAL_ADDR);
        http.timeout = Duration::from_secs(10);
        let t = Instant::now();
        match http.get(&path) {
            Ok(r) => (r.online(), t.elapsed(), r.status),
            Err(_) => (false, t.elapsed(), 0),
        }
    })
}

/// Another guest loads the portal page `n` times from `ns`: the slowest answer, and how many
/// were not a 200.
fn guest_pages(ns: &str, n: usize) -> (Duration, usize) {
    in_ns(ns, move || {
        let mut worst = Duration::ZERO;
        let mut bad = 0;
        for _ in 0..n {
            let mut http = Http::new(PORTAL_ADDR);
            http.timeout = Duration::from_secs(10);
            let t = Instant::now();
            if http.get("/").map(|r| r.status).ok() != Some(200) {
                bad += 1;
            }
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        (worst, bad)
    })
}

/// `wifiposd status` against the cafe's daemon: (succeeded, time taken).
fn admin_status(cafe: &Cafe) -> (bool, Duration) {
    let t = Instant::now();
    let out = cafe.admin(&["status"]);
    (out.status.success(), t.elapsed())
}

/// POSTs a photo from the calling thread's namespace; returns (status or 0, time taken).
fn post_photo(w: usize, h: usize, px: &[u8]) -> (u16, Duration) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(
        &PORTAL_ADDR.parse::<SocketAddr>().unwrap(),
        Duration::from_secs(3),
    ) else {
        return (0, t.elapsed());
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /photo?w={w}&h={h} HTTP/1.1\r\nHost: {PORTAL_ADDR}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        px.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(px);
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    (
        common::http_status(&String::from_utf8_lossy(&buf[..n])),
        t.elapsed(),
    )
}

/// Processes running the photo decoder (`wifiposd __decode-qr`).
fn decoder_children() -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if c.windows(11).any(|w| w == b"__decode-qr") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_photo_of_finder_patterns_does_not_freeze_the_portal() {
    let _serial = one_at_a_time();
    let Some(cafe) = Cafe::open("ph") else { return };
    let mut daemon = cafe.start();
    let attacker = phones::ns_of(&cafe.lab, "client2");

    // The attack: crafted photos of 400 px and of the largest size allowed (1000 px), one
    // after the other, and a third one at the same time (one upload per address: "busy"), plus
    // one larger than allowed.
    let started = Instant::now();
    let mut threads = Vec::new();
    let batches: Vec<Vec<(usize, Vec<u8>)>> = vec![
        vec![
            (400, finder_grid(400, 1, 1)),
            (1000, finder_grid(1000, 1, 1)),
        ],
        vec![(400, finder_grid(400, 1, 2))],
    ];
    for batch in batches {
        let ns = attacker.clone();
        threads.push(std::thread::spawn(move || {
            phones::enter_ns(&ns);
            batch
                .iter()
                .map(|(side, px)| post_photo(*side, *side, px))
                .collect::<Vec<_>>()
        }));
        // The first batch's photo is in the decoder before the second batch comes (which is
        // then "busy"): otherwise which batch gets the address's one upload is a race.
        let t = Instant::now();
        while threads.len() == 1 && decoder_children() == 0 && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let oversize = {
        let ns = attacker.clone();
        std::thread::spawn(move || {
            phones::enter_ns(&ns);
            post_photo(2000, 2000, &vec![0u8; 2000 * 2000])
        })
    };
    std::thread::sleep(Duration::from_millis(300));

    // During the attack: another guest's page, a customer's redemption, the admin.
    let (page_worst, page_bad) = guest_pages(&phones::ns_of(&cafe.lab, "client3"), 10);
    let (online, took, status) =
        customer_redeems(&phones::ns_of(&cafe.lab, "client"), voucher_path(&cafe));
    let (admin_ok, admin_took) = admin_status(&cafe);
    let attack_running = decoder_children();
    eprintln!(
        "during the photo attack: guest page worst {page_worst:?} ({page_bad} failed), customer \
         online={online} in {took:?} (status {status}), status answered={admin_ok} in \
         {admin_took:?}, decoder processes {attack_running}"
    );
    assert_eq!(page_bad, 0, "another guest's page failed during the attack");
    assert!(
        page_worst < Duration::from_secs(1),
        "page took {page_worst:?}"
    );
    assert!(online, "the customer was not online (status {status})");
    assert!(took < Duration::from_secs(2), "redemption took {took:?}");
    assert!(admin_ok && admin_took < Duration::from_secs(2));

    let (big_status, big_took) = oversize.join().unwrap();
    assert!(
        [400, 413].contains(&big_status),
        "oversize photo: {big_status} after {big_took:?}"
    );
    let mut worst = Duration::ZERO;
    let mut decoded = 0;
    for t in threads {
        for (status, took) in t.join().unwrap() {
            eprintln!("crafted photo answered {status} after {took:?}");
            assert!(
                [422, 503].contains(&status),
                "crafted photo got {status} after {took:?}"
            );
            decoded += usize::from(status == 422);
            worst = worst.max(took);
        }
    }
    assert!(
        decoded >= 2,
        "both crafted photos of the first batch reach the decoder"
    );
    eprintln!(
        "worst crafted-photo answer: {worst:?} (attack total {:?})",
        started.elapsed()
    );
    assert!(worst < Duration::from_secs(10), "{worst:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        decoder_children(),
        0,
        "a decoder process outlived its photo"
    );
    assert!(alive(&mut daemon), "{}", cafe.log());

    // A genuine photo of a voucher still redeems (after the attack, with the decoder free).
    let v = cafe.issue(&["--duration", "1h"]);
    let (side, px) = common::voucher_png_gray(v["url"].as_str().unwrap());
    let photo = common::photograph(side, &px, 8.0, 900);
    let phone = phones::ns_of(&cafe.lab, "client4");
    let (status, took) = in_ns(&phone, move || post_photo(900, 900, &photo));
    eprintln!("a genuine voucher photo: {status} in {took:?}");
    assert_eq!(status, 200, "{}", cafe.log());
}

/// Starts the daemon under a 256 MB address-space limit (a small router) and waits until the
/// portal answers.
fn start_limited(cafe: &Cafe) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cafe.path("daemon.log"))
        .unwrap();
    let mut cmd = cafe.lab.cmd("router", "prlimit");
    cmd.args(["--as=268435456", "--", WIFIPOSD, "serve", "--config"])
        .arg(cafe.path("wifipos.conf"))
        .stdout(Stdio::null())
        .stderr(log);
    let d = Daemon(cmd.spawn().expect("prlimit (util-linux)"));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if cafe.lab.curl("client", &[&format!("{PORTAL}/")]).0 == 200 {
            return d;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("wifiposd did not come up: {}", cafe.log());
}

/// One kind of upload that is never finished: the request head and all of a body but its
/// last byte.
#[derive(Clone)]
struct Upload {
    head: String,
    body_len: usize,
}

impl Upload {
    fn redeem(len: usize) -> Upload {
        Upload {
            head: format!(
                "POST /redeem HTTP/1.1\r\nHost: {PORTAL_ADDR}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"
            ),
            body_len: len,
        }
    }

    fn photo(side: usize) -> Upload {
        Upload {
            head: format!(
                "POST /photo?w={side}&h={side} HTTP/1.1\r\nHost: {PORTAL_ADDR}\r\nContent-Length: {}\r\n\r\n",
                side * side
            ),
            body_len: side * side,
        }
    }
}

/// From namespace `ns`: `per_source` connections from each of `sources` to `target`, each
/// sending `upload` but its last byte, held open until `stop`. Returns the threads; each gives
/// how many connections it opened.
fn hold_uploads(
    ns: &str,
    sources: Vec<IpAddr>,
    per_source: usize,
    target: SocketAddr,
    upload: Upload,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<usize>> {
    sources
        .into_iter()
        .map(|src| {
            let (ns, upload, stop) = (ns.to_owned(), upload.clone(), stop.clone());
            std::thread::spawn(move || {
                phones::enter_ns(&ns);
                let body = vec![b'A'; upload.body_len - 1];
                let mut held = Vec::new();
                for _ in 0..per_source {
                    let domain = socket2::Domain::for_address(target);
                    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
                    s.bind(&SocketAddr::new(src, 0).into()).unwrap();
                    if s.connect_timeout(&target.into(), Duration::from_secs(2))
                        .is_err()
                    {
                        continue;
                    }
                    let mut s: TcpStream = s.into();
                    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                    let _ = s.write_all(upload.head.as_bytes());
                    let _ = s.write_all(&body);
                    held.push(s);
                }
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                held.len()
            })
        })
        .collect()
}

/// Samples the daemon's RSS every 50 ms until `stop`; gives the peak in KiB.
fn rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slow_uploads_from_many_addresses_do_not_exhaust_memory() {
    let _serial = one_at_a_time();
    let Some(cafe) = Cafe::open("mem") else {
        return;
    };
    let mut daemon = start_limited(&cafe);
    let pid = daemon.pid();
    let idle = rss_kib(pid);
    let attacker = phones::ns_of(&cafe.lab, "client2");
    // One phone, 40 IPv6 addresses in the guest /64 and 40 more IPv4 addresses.
    let mut v6 = Vec::new();
    let mut v4 = Vec::new();
    for i in 0..40u16 {
        let a6 = format!("fd20::2:{i:x}");
        ip_ok(&[
            "-n",
            &attacker,
            "-6",
            "addr",
            "add",
            &format!("{a6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        v6.push(a6.parse::<IpAddr>().unwrap());
        let a4 = format!("10.20.0.{}", 200 + i);
        ip_ok(&[
            "-n",
            &attacker,
            "addr",
            "add",
            &format!("{a4}/24"),
            "dev",
            "eth0",
        ]);
        v4.push(a4.parse::<IpAddr>().unwrap());
    }
    let portal6: SocketAddr = "[fd20::1]:2050".parse().unwrap();
    let portal4: SocketAddr = PORTAL_ADDR.parse().unwrap();

    let phases: [(&str, Upload, Option<Upload>); 2] = [
        ("1.44 MB redeem bodies", Upload::redeem(1_440_000), None),
        (
            "4 KiB redeem bodies + 1000x1000 photos",
            Upload::redeem(4096),
            Some(Upload::photo(1000)),
        ),
    ];
    for (phase, (what, upload, photo)) in phases.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = rss_sampler(pid, stop.clone());
        let t = Instant::now();
        let mut threads = hold_uploads(
            &attacker,
            v6.clone(),
            16,
            portal6,
            upload.clone(),
            stop.clone(),
        );
        threads.extend(hold_uploads(
            &attacker,
            v4.clone(),
            16,
            portal4,
            upload,
            stop.clone(),
        ));
        if let Some(p) = photo {
            threads.extend(hold_uploads(
                &attacker,
                v4[..8].to_vec(),
                1,
                portal4,
                p,
                stop.clone(),
            ));
        }
        std::thread::sleep(Duration::from_secs(3));
        let (page_worst, page_bad) = guest_pages(&phones::ns_of(&cafe.lab, "client3"), 10);
        let customer = if phase == 0 { "client" } else { "client4" };
        let (online, took, status) =
            customer_redeems(&phones::ns_of(&cafe.lab, customer), voucher_path(&cafe));
        let (admin_ok, admin_took) = admin_status(&cafe);
        let during = rss_kib(pid);
        stop.store(true, Ordering::Relaxed);
        let opened: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let peak = sampler.join().unwrap();
        let line = format!(
            "{what}: {opened} connections opened in {:?}; RSS idle {idle} KiB, during {during} \
             KiB, peak {peak} KiB; guest page worst {page_worst:?} ({page_bad} failed); \
             customer online={online} in {took:?} (status {status}); status answered={admin_ok} \
             in {admin_took:?}",
            t.elapsed()
        );
        eprintln!("{line}");
        assert!(alive(&mut daemon), "the daemon died: {}", cafe.log());
        assert!(peak <= RSS_LIMIT_KIB, "{line}");
        assert_eq!(page_bad, 0, "{line}");
        // Within the 2 s a customer is promised. (While 1 288 connections are being opened a
        // page's SYN can be dropped once and resent by the phone's TCP after its 1 s timeout:
        // seen once at 1.05 s on a loaded machine; the page still answered.)
        assert!(page_worst < Duration::from_secs(2), "{line}");
        assert!(online && took < Duration::from_secs(2), "{line}");
        assert!(admin_ok && admin_took < Duration::from_secs(2), "{line}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    eprintln!("RSS after the attacks: {after} KiB");
    assert!(alive(&mut daemon));
    assert!(after <= RSS_LIMIT_KIB);
}

/// Points the router's neighbour entry for `ip` on interface `ifindex` at `mac`, as an ARP
/// reply from the attacker would (RTM_NEWNEIGH, replace), over a netlink socket opened in the
/// router's namespace.
fn neigh_replace(sock: &mnl::Socket, ifindex: u32, ip: [u8; 4], mac: [u8; 6], seq: u32) {
    const RTM_NEWNEIGH: u16 = 28;
    const FLAGS: u16 = 0x1 | 0x4 | 0x100 | 0x400; // REQUEST | ACK | REPLACE | CREATE
    let mut m = Vec::with_capacity(48);
    m.extend_from_slice(&48u32.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    m.extend_from_slice(&FLAGS.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ndmsg: AF_INET, ifindex, NUD_REACHABLE, no flags, unicast
    m.extend_from_slice(&[2, 0, 0, 0]);
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&0x02u16.to_ne_bytes());
    m.extend_from_slice(&[0, 1]);
    // NDA_DST, NDA_LLADDR
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes());
    m.extend_from_slice(&ip);
    m.extend_from_slice(&10u16.to_ne_bytes());
    m.extend_from_slice(&2u16.to_ne_bytes());
    m.extend_from_slice(&mac);
    m.extend_from_slice(&[0, 0]);
    assert_eq!(m.len(), 48);
    sock.send(&m).unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv_raw(&mut buf).unwrap();
    let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
    assert!(n >= 20 && code == 0, "RTM_NEWNEIGH failed: {code}");
}

/// Sets the MAC address of interface `ifindex` (RTM_NEWLINK with IFLA_ADDRESS) over a netlink
/// socket opened in the attacker's namespace: its frames then carry `mac`, and it receives
/// what is sent to `mac`.
fn link_address(sock: &mnl::Socket, ifindex: u32, mac: [u8; 6], seq: u32) {
    const RTM_NEWLINK: u16 = 16;
    const FLAGS: u16 = 0x1 | 0x4; // REQUEST | ACK
    let mut m = Vec::with_capacity(44);
    m.extend_from_slice(&44u32.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&FLAGS.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: AF_UNSPEC, type, index, flags, change
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // IFLA_ADDRESS
    m.extend_from_slice(&10u16.to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes());
    m.extend_from_slice(&mac);
    m.extend_from_slice(&[0, 0]);
    assert_eq!(m.len(), 44);
    sock.send(&m).unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv_raw(&mut buf).unwrap();
    let code = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
    assert!(n >= 20 && code == 0, "RTM_NEWLINK failed: {code}");
}

fn ifindex(cafe: &Cafe, host: &str, dev: &str) -> u32 {
    let out = cafe.lab.run(host, "ip", &["-j", "link", "show", dev]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    j[0]["ifindex"].as_u64().unwrap() as u32
}

#[test]
fn invented_macs_do_not_lock_out_customers() {
    let _serial = one_at_a_time();
    let Some(cafe) = Cafe::open("lim") else {
        return;
    };
    let _daemon = cafe.start();
    let br = ifindex(&cafe, "router", "br-guest");
    let eth0 = ifindex(&cafe, "client2", "eth0");
    let router = phones::ns_of(&cafe.lab, "router");
    let attacker = phones::ns_of(&cafe.lab, "client2");
    let victim_mac = [2, 0, 0, 0, 0, 0x13]; // client4
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let invented = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let db = cafe.path("wifipos.db");
    let count_events = |db: &std::path::Path| -> i64 {
        phones::read_db(db)
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    let events_before = count_events(&db);

    // The attacker: one bad voucher link per invented MAC, which it takes on and re-points its
    // IP at in the router's neighbour table;
    // the first 30 charged to another guest's MAC. Paced at 150 requests/s.
    const RATE: u64 = 150;
    let attack = {
        let (stop, sent, limited) = (stop.clone(), sent.clone(), limited.clone());
        let invented = invented.clone();
        std::thread::spawn(move || {
            phones::enter_ns(&router);
            let nl = mnl::Socket::new(mnl::Bus::Route).unwrap();
            phones::enter_ns(&attacker);
            let own = mnl::Socket::new(mnl::Bus::Route).unwrap();
            let mut http = Http::new(PORTAL_ADDR);
            http.timeout = Duration::from_secs(5);
            let t = Instant::now();
            let mut i: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                let mac = if i < 30 {
                    victim_mac
                } else {
                    [0x02, 0xaa, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01]
                };
                // The attacker takes the invented MAC and tells the router (as its ARP would).
                link_address(&own, eth0, mac, i + 1);
                neigh_replace(&nl, br, [10, 20, 0, 11], mac, i + 1);
                if let Ok(r) = http.get(&format!("/v/AAAAbogus{i}")) {
                    if r.status == 429 {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                invented.fetch_add(1, Ordering::Relaxed);
                let due = Duration::from_micros(u64::from(i) * 1_000_000 / RATE);
                if let Some(wait) = due.checked_sub(t.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    // A second attacker phone: bad codes from 30 IPv4 addresses in turn, 40 per second, so no
    // per-source bucket holds them back; only the shared budget does.
    let extra = phones::ExtraPhones::add(&cafe.lab, 1);
    let aliases: Vec<IpAddr> = (0..30u8)
        .map(|i| IpAddr::from([10, 20, 0, 200 + i]))
        .collect();
    let attacker_ns = extra.phones[0].ns.clone();
    for a in &aliases {
        ip_ok(&[
            "-n",
            &attacker_ns,
            "addr",
            "add",
            &format!("{a}/24"),
            "dev",
            "eth0",
        ]);
    }
    let spread = {
        let (stop, sent, limited) = (stop.clone(), sent.clone(), limited.clone());
        std::thread::spawn(move || {
            phones::enter_ns(&attacker_ns);
            let portal: SocketAddr = PORTAL_ADDR.parse().unwrap();
            let t = Instant::now();
            let mut i: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                let src = aliases[i as usize % aliases.len()];
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.bind(&SocketAddr::new(src, 0).into()).unwrap();
                if s.connect_timeout(&portal.into(), Duration::from_secs(2))
                    .is_ok()
                {
                    let mut s: TcpStream = s.into();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let req = format!(
                        "GET /v/AAAAspread{i} HTTP/1.1\r\nHost: {PORTAL_ADDR}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(req.as_bytes());
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).unwrap_or(0);
                    if common::http_status(&String::from_utf8_lossy(&buf[..n])) == 429 {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let due = Duration::from_micros(u64::from(i) * 1_000_000 / 40);
                if let Some(wait) = due.checked_sub(t.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    // The guest whose MAC was used: its own mistyped code is not "too many attempts".
    let victim = phones::ns_of(&cafe.lab, "client4");
    let typo = in_ns(&victim, || {
        let mut http = Http::new(PORTAL_ADDR);
        http.post_form("/redeem", "code=AAAAmistyped")
            .map(|r| r.status)
            .unwrap_or(0)
    });
    let mut customers = Vec::new();
    for (at, phone) in [(10, "client"), (35, "client3"), (40, "client4")] {
        let wait = Duration::from_secs(at).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        // The second customer comes once the attack has invented enough MACs to fill the old
        // limiter (a slow machine needs longer than 35 s), within its 60 s memory.
        while phone == "client3"
            && invented.load(Ordering::Relaxed) <= 4096 + 30
            && started.elapsed() < Duration::from_secs(55)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let at = started.elapsed().as_secs().max(at);
        let r = customer_redeems(&phones::ns_of(&cafe.lab, phone), voucher_path(&cafe));
        customers.push((at, phone, r, invented.load(Ordering::Relaxed)));
    }
    stop.store(true, Ordering::Relaxed);
    attack.join().unwrap();
    spread.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let n = sent.load(Ordering::Relaxed);
    let events = count_events(&db) - events_before;
    let per_minute = events as f64 * 60.0 / secs;
    eprintln!(
        "limiter attack: {n} requests (invented MACs; 30 more source addresses) in {secs:.1} s ({:.0}/s), {} answered \
         429; events written {events} ({per_minute:.0} per minute); victim's typo got {typo}",
        n as f64 / secs,
        limited.load(Ordering::Relaxed)
    );
    for (at, phone, (online, took, status), sent) in &customers {
        eprintln!(
            "customer {phone} at {at} s (after {sent} invented MACs): online={online} in \
             {took:?} (status {status})"
        );
    }
    // Enough to fill the old 4 096-device limiter within its 60 s memory before the second
    // customer came (that one got 429 from the old daemon).
    assert!(
        customers[1].3 > 4096 + 30,
        "the attack was too slow to count: {} invented MACs by {} s",
        customers[1].3,
        customers[1].0
    );
    assert_ne!(
        typo, 429,
        "another guest's MAC was charged for the attacker's attempts"
    );
    assert!(typo == 400 || typo == 403, "typo got {typo}");
    for (at, phone, (online, took, status), _) in customers {
        assert!(
            online && took < Duration::from_secs(2),
            "customer {phone} at {at} s: online={online} in {took:?} (status {status})"
        );
    }
    // Refusals the router verified and recorded are bounded by the shared guess budget (120
    // per minute after a first burst of 120), whatever the number of invented devices.
    let bound = 120.0 + 120.0 * secs / 60.0 + 20.0; // + the customers' own events
    assert!(
        (events as f64) <= bound,
        "{events} events in {secs:.0} s (bound {bound:.0})"
    );
}
