//! Central authorization against a real FreeRADIUS running wifipos's example policy
//! (`docs/freeradius/`: the dictionary, the SQLite schema and the `authorize` section an
//! operator installs). Two routers' sessions (each its own store, venue and in-memory
//! firewall) ask the one server through the daemon's own Access-Request code: a voucher's
//! device limit holds across both; a voucher revoked at HQ is refused at both, with the
//! server's words; the server's Session-Timeout (the voucher's time counted from its first
//! use anywhere) shortens the voucher in the store and the firewall; the server down or a
//! wrong secret leaves the decision to the router after `radius_timeout_ms`; only redemptions
//! the router itself would grant to a new device are asked. The daemon's portal path (an HTTP
//! redemption that waits without blocking the portal) and two daemons in two venues are
//! tested in the lab (`two_venues_share_one_device_limit_through_hq`).
//! Under CI=true a missing freeradius (or namespaces) fails the test.

#[path = "common/cafe.rs"]
mod cafe;
mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::till::{key, key_id, token, wall_now};
use wifipos::config::Config;
use wifipos::firewall::MemoryFirewall;
use wifipos::keys::Keyring;
use wifipos::mac::Mac;
use wifipos::portal::{Central, Gate, RedeemError};
use wifipos::sessions::Sessions;
use wifipos::store::Store;
use wifipos::voucher::Rejection;

use common::freeradius::{free_udp_port, have_freeradius, Radius, SECRET};

fn user(serial: u64) -> String {
    format!("{}:{serial}", key_id())
}

/// One venue's router: its own store and firewall, asking `radius` (or, with `secret`, a
/// server that does not share its secret).
fn venue(dir: &Path, name: &str, radius: &Radius, secret: &str, timeout_ms: u32) -> Sessions {
    let cfg = Config {
        venue: name.into(),
        radius_auth_server: Some(radius.auth_addr()),
        radius_secret: secret.into(),
        radius_timeout_ms: timeout_ms,
        ..Config::default()
    };
    let mut s = Sessions::new(
        Store::open(&dir.join(format!("{name}.db"))).unwrap(),
        Box::new(MemoryFirewall::new()),
        Keyring::new([key().verifying_key()]),
        cfg,
    );
    s.restore(wall_now()).unwrap();
    s
}

/// Venues `cafe-a` and `cafe-b`, sharing the server and its secret.
fn two_venues(dir: &Path, radius: &Radius) -> (Sessions, Sessions) {
    (
        venue(dir, "cafe-a", radius, SECRET, 2000),
        venue(dir, "cafe-b", radius, SECRET, 2000),
    )
}

fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What the portal does with a redemption: ask the server if the gate says so (awaiting the
/// answer with no borrow held), then redeem with its word. Also says whether it asked.
fn redeem(
    rt: &tokio::runtime::Runtime,
    s: &mut Sessions,
    t: &str,
    m: Mac,
) -> (
    Result<wifipos::portal::Access, RedeemError>,
    Option<Central>,
) {
    let now = wall_now();
    match s.ask_central(t, m, now) {
        None => (s.redeem(t, m, now), None),
        Some(q) => {
            let central = rt.block_on(q);
            (s.redeem_with(t, m, now, central.clone()), Some(central))
        }
    }
}

fn server(dir: &Path) -> Option<Radius> {
    if !have_freeradius() {
        return None;
    }
    let lo = IpAddr::from([127, 0, 0, 1]);
    let mut r = Radius::central(dir, lo, free_udp_port(), free_udp_port(), &[lo], None);
    r.start();
    Some(r)
}

fn requests(r: &Radius) -> usize {
    r.log().matches("Received Access-Request").count()
}

fn firewall_secs(s: &mut Sessions, m: Mac) -> Option<u64> {
    s.firewall
        .list_allowed()
        .unwrap()
        .into_iter()
        .find(|(x, _)| *x == m)
        .map(|(_, d)| d.as_secs())
}

#[test]
fn device_limits_hold_across_two_routers_and_the_servers_time_counts_from_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let Some(radius) = server(dir.path()) else {
        return;
    };
    let rt = runtime();
    let (mut a, mut b) = two_venues(dir.path(), &radius);
    let t = token(1, 2, wall_now());
    let (r, asked) = redeem(&rt, &mut a, &t, mac(1));
    assert_eq!(r.unwrap().devices, 1);
    assert!(matches!(asked, Some(Central::Accept { .. })), "{asked:?}");
    let (r, _) = redeem(&rt, &mut b, &t, mac(2));
    assert_eq!(r.unwrap().devices, 1, "router B sees only its own device");
    // A third device at A: A alone would allow it (1 of 2 here); HQ knows of 2.
    let (r, asked) = redeem(&rt, &mut a, &t, mac(3));
    match r {
        Err(RedeemError::Refused(Rejection::CentralRefused { message: Some(m) })) => {
            assert!(m.contains("2 device(s)"), "{m}")
        }
        other => panic!("expected the central refusal, got {other:?} ({asked:?})"),
    }
    assert_eq!(firewall_secs(&mut a, mac(3)), None, "not let through");
    let refusals: Vec<String> = a
        .store
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k == "central_refused")
        .collect();
    assert_eq!(refusals.len(), 1, "the refusal is in the event log");
    // HQ's record: one row per device, with the venue that asked.
    let rows: Vec<(String, String)> = radius
        .hq_db()
        .prepare("SELECT mac, venue FROM wifipos_devices WHERE voucher = ?1 ORDER BY mac")
        .unwrap()
        .query_map([user(1)], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("02-00-00-00-00-01".to_owned(), "cafe-a".to_owned()),
            ("02-00-00-00-00-02".to_owned(), "cafe-b".to_owned())
        ]
    );
    // A device already on the voucher is not asked again; it keeps its access.
    let before = requests(&radius);
    let (r, asked) = redeem(&rt, &mut a, &t, mac(1));
    assert!(r.is_ok() && asked.is_none(), "{asked:?}");
    assert_eq!(requests(&radius), before);

    // The voucher's time runs from its first use at any venue: first used at A 3000 s ago
    // (moved back in HQ's record), it has about 600 s at B, not a fresh hour.
    let t2 = token(2, 2, wall_now());
    let (r, _) = redeem(&rt, &mut a, &t2, mac(1));
    assert!(r.unwrap().seconds_left > 3590);
    radius
        .hq_db()
        .execute(
            "UPDATE wifipos_devices SET first_seen = first_seen - 3000 WHERE voucher = ?1",
            [user(2)],
        )
        .unwrap();
    let (r, asked) = redeem(&rt, &mut b, &t2, mac(4));
    let Some(Central::Accept {
        session_timeout: Some(st),
    }) = asked
    else {
        panic!("{asked:?}")
    };
    assert!((595..=601).contains(&st), "Session-Timeout {st}");
    let left = r.unwrap().seconds_left;
    assert!((590..=601).contains(&left), "{left} s left at B");
    let fw = firewall_secs(&mut b, mac(4)).unwrap();
    assert!(
        (590..=601).contains(&fw),
        "the firewall's timeout is {fw} s"
    );
    let ends = b
        .store
        .voucher(key_id(), 2)
        .unwrap()
        .unwrap()
        .ends_at
        .unwrap();
    assert!((ends - wall_now() - 600).abs() <= 5, "stored end");
    // A Session-Timeout longer than the voucher's time left never lengthens it (HQ's own
    // policy never answers more than the duration, so the word is given directly).
    let t3 = token(3, 2, wall_now());
    let now = wall_now();
    let got = b
        .redeem_with(
            &t3,
            mac(6),
            now,
            Central::Accept {
                session_timeout: Some(10_000),
            },
        )
        .unwrap();
    assert!((3599..=3600).contains(&got.seconds_left), "{got:?}");
    let fw = firewall_secs(&mut b, mac(6)).unwrap();
    assert!(
        (3590..=3600).contains(&fw),
        "the firewall's timeout is {fw} s"
    );
    let ends = b
        .store
        .voucher(key_id(), 3)
        .unwrap()
        .unwrap()
        .ends_at
        .unwrap();
    assert_eq!(ends, now + 3600, "the voucher's own end");
}

#[test]
fn a_voucher_revoked_at_hq_is_refused_at_every_venue_with_the_servers_words() {
    let dir = tempfile::tempdir().unwrap();
    let Some(radius) = server(dir.path()) else {
        return;
    };
    let rt = runtime();
    let (mut a, mut b) = two_venues(dir.path(), &radius);
    let t = token(9, 3, wall_now());
    radius
        .hq_db()
        .execute(
            "INSERT INTO wifipos_revoked (voucher) VALUES (?1)",
            [user(9)],
        )
        .unwrap();
    for s in [&mut a, &mut b] {
        let (r, _) = redeem(&rt, s, &t, mac(1));
        assert_eq!(
            r,
            Err(RedeemError::Refused(Rejection::CentralRefused {
                message: Some("This voucher was cancelled.".into())
            }))
        );
        assert_eq!(s.store.access(mac(1), wall_now()).unwrap(), None);
    }
    // The refusal's text for the guest names the central system and carries the words.
    let page = wifipos::portal::pages::refusal(
        wifipos::portal::pages::Lang::En,
        "Cafe",
        &wifipos::portal::pages::Refusal::Voucher(Rejection::CentralRefused {
            message: Some("This voucher was cancelled.".into()),
        }),
    );
    assert!(
        page.contains("central system") && page.contains("This voucher was cancelled."),
        "{page}"
    );
}

#[test]
fn without_an_answer_the_router_decides_alone_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut radius) = server(dir.path()) else {
        return;
    };
    let rt = runtime();
    // A router whose secret differs from the server's: FreeRADIUS drops its requests (their
    // Message-Authenticator does not check out), so no answer comes.
    let mut wrong = venue(dir.path(), "cafe-w", &radius, "not-the-secret", 400);
    let t0 = Instant::now();
    let (r, asked) = redeem(&rt, &mut wrong, &token(20, 1, wall_now()), mac(1));
    let took = t0.elapsed();
    assert!(r.is_ok(), "{r:?}");
    assert!(matches!(asked, Some(Central::Unanswered(_))), "{asked:?}");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(900),
        "{took:?}"
    );
    assert!(
        radius.log().contains("Message-Authenticator"),
        "FreeRADIUS says why it dropped the request"
    );
    let events = wrong.store.events(0, 100).unwrap();
    let unanswered: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "central_unanswered")
        .collect();
    assert_eq!(unanswered.len(), 1, "{events:?}");
    assert!(
        unanswered[0]
            .detail
            .contains("did not answer within 400 ms"),
        "{:?}",
        unanswered[0]
    );
    // The server down (nothing listens: the port answers ICMP unreachable), or an address
    // with no route (the link down: the send fails at once, or nothing answers): the same,
    // never later than the timeout.
    radius.stop();
    let mut a = venue(dir.path(), "cafe-a", &radius, SECRET, 400);
    let t0 = Instant::now();
    let (r, asked) = redeem(&rt, &mut a, &token(21, 1, wall_now()), mac(2));
    assert!(r.is_ok() && matches!(asked, Some(Central::Unanswered(_))));
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let mut blackhole = venue(dir.path(), "cafe-b", &radius, SECRET, 400);
    blackhole.cfg.radius_auth_server = Some("192.0.2.1:1812".parse().unwrap());
    let t0 = Instant::now();
    let (r, asked) = redeem(&rt, &mut blackhole, &token(22, 1, wall_now()), mac(3));
    assert!(r.is_ok() && matches!(asked, Some(Central::Unanswered(_))));
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn only_what_the_router_would_grant_a_new_device_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let Some(radius) = server(dir.path()) else {
        return;
    };
    let rt = runtime();
    let mut a = venue(dir.path(), "cafe-a", &radius, SECRET, 2000);
    let now = wall_now();
    // Forged, revoked here, expired before first use: refused locally, HQ never asked.
    let forged = {
        let mut t = token(30, 1, now).into_bytes();
        let i = t.len() - 3;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    a.store.revoke(key_id(), 31, now).unwrap();
    let deadline_passed = wifipos::voucher::Voucher {
        key_id: key_id(),
        serial: 32,
        issued_at: (now - 7200) as u32,
        redeem_by: (now - 3600) as u32,
        duration_s: 3600,
        max_devices: 1,
        purchase_ref: String::new(),
        ext: None,
    }
    .sign(&key())
    .unwrap();
    for t in [forged, token(31, 1, now), deadline_passed] {
        let (r, asked) = redeem(&rt, &mut a, &t, mac(1));
        assert!(matches!(r, Err(RedeemError::Refused(_))), "{r:?}");
        assert_eq!(asked, None);
    }
    assert_eq!(requests(&radius), 0);
    // A genuine new device is asked once.
    let (r, asked) = redeem(&rt, &mut a, &token(33, 1, now), mac(1));
    assert!(r.is_ok() && asked.is_some());
    assert_eq!(requests(&radius), 1);
    // Central authorization off: never asked.
    a.cfg.radius_auth_server = None;
    assert!(a.ask_central(&token(34, 1, now), mac(2), now).is_none());
}

/// A record whose answer was lost arrives twice (the router resends it with a new
/// Identifier and Acct-Delay-Time, RFC 5080): the detail file logs both, the example
/// policy's accounting table keeps it once, with octets that count the Gigawords.
#[test]
fn a_record_sent_twice_is_kept_once_in_hqs_accounting_table() {
    use wifipos::radius::packet::{accounting_request, check_response, Record, StatusType};
    let dir = tempfile::tempdir().unwrap();
    let Some(radius) = server(dir.path()) else {
        return;
    };
    let now = wall_now();
    let stop = Record {
        status: StatusType::Stop,
        session_id: "020000000001-1-7".into(),
        user_name: user(7),
        mac: mac(1),
        nas_id: "cafe-a".into(),
        framed_ip: None,
        session_time: 3600,
        input_octets: (2 << 32) + 5,
        output_octets: 123_456,
        event_time: now as u32,
        cause: Some(wifipos::radius::TerminateCause::AdminReset),
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for (id, delay) in [(1u8, 0u32), (2, 4)] {
        let req = accounting_request(id, &stop.attributes(), delay, SECRET.as_bytes());
        udp.send_to(&req, radius.addr()).unwrap();
        let mut buf = [0u8; 4096];
        let n = udp.recv(&mut buf).unwrap();
        assert_eq!(check_response(&buf[..n], &req, SECRET.as_bytes()), Ok(()));
    }
    assert_eq!(radius.detail().len(), 2, "the detail file logs both sends");
    let rows: Vec<(String, String, i64, i64, i64, String)> = radius
        .hq_db()
        .prepare(
            "SELECT status, venue, event_time, input_octets, output_octets, terminate_cause
             FROM wifipos_accounting WHERE session_id = '020000000001-1-7'",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [(
            "Stop".to_owned(),
            "cafe-a".to_owned(),
            now,
            (2 << 32) + 5,
            123_456,
            "Admin-Reset".to_owned()
        )]
    );
}

/// How much a central authorization adds to a redemption: p50/p99 with it on (FreeRADIUS
/// on loopback with the example policy over SQLite) and off, one run each.
#[test]
#[ignore = "benchmark (scripts/bench runs it): redemption latency with central authorization on vs off"]
fn bench_redemption_latency_central_on_vs_off() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut radius) = server(dir.path()) else {
        return;
    };
    // As in production: no debug log.
    radius.stop();
    radius.debug = false;
    radius.start();
    let rt = runtime();
    let n = 300u64;
    let mut results = Vec::new();
    for on in [false, true] {
        let mut s = venue(
            dir.path(),
            if on { "on" } else { "off" },
            &radius,
            SECRET,
            2000,
        );
        if !on {
            s.cfg.radius_auth_server = None;
        }
        let mut ms = Vec::new();
        for i in 0..n {
            let t = token(1000 + i + if on { n } else { 0 }, 1, wall_now());
            let t0 = Instant::now();
            let (r, asked) = redeem(&rt, &mut s, &t, mac((i % 200) as u8));
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            assert!(r.is_ok());
            assert_eq!(asked.is_some(), on);
            if on {
                assert!(matches!(asked, Some(Central::Accept { .. })), "{asked:?}");
            }
        }
        ms.sort_by(f64::total_cmp);
        let p = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "central authorization {}: {n} redemptions, p50 {:.2} ms, p99 {:.2} ms",
            if on { "on " } else { "off" },
            p(0.5),
            p(0.99)
        );
        results.push((p(0.5), p(0.99)));
    }
    println!(
        "extra latency with central authorization: p50 +{:.2} ms, p99 +{:.2} ms",
        results[1].0 - results[0].0,
        results[1].1 - results[0].1
    );
}

/// An "hq" namespace with FreeRADIUS, linked to each venue's upstream ("the internet"), which
/// masquerades the venue's router towards it; removed on drop.
struct Hq {
    ns: String,
}

impl Hq {
    fn sh(args: &[&str]) {
        let o = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Links `venue`'s upstream to hq over 172.31.`n`.0/30 (hq .1, upstream .2) and routes the
    /// router's traffic for 172.31.0.0/16 there.
    fn link(&self, venue: &cafe::Cafe, n: u8) {
        let up = format!("{}-upstream", venue.lab.name);
        let (hq_if, hq_ip, up_ip) = (
            format!("v{n}"),
            format!("172.31.{n}.1/30"),
            format!("172.31.{n}.2/30"),
        );
        Hq::sh(&[
            "ip", "link", "add", &hq_if, "netns", &self.ns, "type", "veth", "peer", "name", "hq",
            "netns", &up,
        ]);
        Hq::sh(&["ip", "-n", &self.ns, "addr", "add", &hq_ip, "dev", &hq_if]);
        Hq::sh(&["ip", "-n", &self.ns, "link", "set", &hq_if, "up"]);
        Hq::sh(&["ip", "-n", &up, "addr", "add", &up_ip, "dev", "hq"]);
        Hq::sh(&["ip", "-n", &up, "link", "set", "hq", "up"]);
        Hq::sh(&[
            "ip",
            "netns",
            "exec",
            &up,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        Hq::sh(&[
            "ip", "netns", "exec", &up, "nft",
            "add table ip hqnat; add chain ip hqnat post { type nat hook postrouting priority 100; }; add rule ip hqnat post oifname \"hq\" masquerade",
        ]);
        Hq::sh(&[
            "ip",
            "-n",
            &format!("{}-router", venue.lab.name),
            "route",
            "add",
            "172.31.0.0/16",
            "via",
            "10.99.0.2",
        ]);
    }
}

impl Drop for Hq {
    fn drop(&mut self) {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = std::process::Command::new("kill").arg(pid).status();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

fn sessions_json(venue: &cafe::Cafe) -> Vec<serde_json::Value> {
    let o = venue.admin(&["sessions", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Two venues, each a whole lab (router with `wifiposd`, phones), their routers reaching one
/// FreeRADIUS at HQ through their uplinks. The same voucher (a 2-device one) is sold by the
/// chain: a phone at venue A and a second one there get on; the first phone, roaming to
/// venue B, gets on there too (HQ knows it: still 2 devices); a third phone at B is refused
/// with HQ's words and stays out of B's kernel set, although B alone has only one device on
/// it. The time at B counts from the first use at A. Then B's link to HQ is cut: a new
/// voucher at B is still sold, by B's own decision, within `radius_timeout_ms`.
#[test]
fn two_venues_share_one_device_limit_through_hq() {
    if !have_freeradius() {
        return;
    }
    let Some(a) = cafe::Cafe::open("ca") else {
        return;
    };
    let Some(mut b) = cafe::Cafe::open("cb") else {
        return;
    };
    // One till key for the chain.
    b.trusted = a.trusted.clone();
    b.key = a.key.clone();
    let hq = Hq {
        ns: format!("{}-hq", a.lab.name),
    };
    Hq::sh(&["ip", "netns", "add", &hq.ns]);
    Hq::sh(&["ip", "-n", &hq.ns, "link", "set", "lo", "up"]);
    hq.link(&a, 1);
    hq.link(&b, 2);
    let rdir = a.path("hq");
    std::fs::create_dir_all(&rdir).unwrap();
    let mut radius = Radius::central(
        &rdir,
        IpAddr::from([0, 0, 0, 0]),
        1813,
        1812,
        &[IpAddr::from([172, 31, 1, 2]), IpAddr::from([172, 31, 2, 2])],
        Some(hq.ns.clone()),
    );
    radius.start();
    for (venue, n, name) in [(&a, 1, "cafe-a"), (&b, 2, "cafe-b")] {
        venue.write_config(&format!(
            "\toption radius_server '172.31.{n}.1'\n\toption radius_auth_server '172.31.{n}.1'\n\toption radius_secret '{SECRET}'\n\toption radius_nas_id '{name}'\n\toption radius_timeout_ms '1000'\n"
        ));
    }
    let _da = a.start();
    let _db = b.start();
    let status = String::from_utf8(b.admin(&["status"]).stdout).unwrap();
    assert!(
        status.contains("RADIUS authorization by 172.31.2.1:1812: new devices wait up to 1000 ms"),
        "{status}"
    );
    let v = a.issue(&["--duration", "1h", "--devices", "2"]);
    let url = v["url"].as_str().unwrap();
    assert_eq!(a.lab.curl("client", &[url]).0, 200);
    assert_eq!(a.lab.curl("client2", &[url]).0, 200);
    // Used first at A half an hour ago, as far as HQ knows.
    radius
        .hq_db()
        .execute(
            "UPDATE wifipos_devices SET first_seen = first_seen - 1800",
            [],
        )
        .unwrap();
    // The first phone roams to venue B (the labs' phones have the same MACs).
    assert_eq!(b.lab.curl("client", &[url]).0, 200);
    let (status, page) = b.lab.curl("client3", &[url]);
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("central_refused") && page.contains("2 device(s) at our venues"),
        "{page}"
    );
    let in_b = b.lab.allowed_set().unwrap();
    assert!(in_b.contains_key("02:00:00:00:00:10"), "{in_b:?}");
    assert!(!in_b.contains_key("02:00:00:00:00:12"), "{in_b:?}");
    assert_eq!(
        b.lab.internet("client3", false),
        0,
        "the third phone stays out"
    );
    assert_eq!(b.lab.internet("client", false), 204);
    // B's session of the roaming phone ends with the voucher's first use at A.
    let at_b = sessions_json(&b);
    assert_eq!(at_b.len(), 1, "{at_b:?}");
    let left = at_b[0]["remaining_s"].as_i64().unwrap();
    assert!((1780..=1801).contains(&left), "{left} s left at B");
    // HQ's accounting table holds both venues' Starts: 2 at A, the roaming phone's at B.
    common::wait_for(
        "HQ's accounting of both venues",
        Duration::from_secs(10),
        || {
            let starts: Vec<(String, String)> = radius
            .hq_db()
            .prepare("SELECT venue, mac FROM wifipos_accounting WHERE status = 'Start' ORDER BY venue, mac")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
            starts
                == [
                    ("cafe-a".to_owned(), "02-00-00-00-00-10".to_owned()),
                    ("cafe-a".to_owned(), "02-00-00-00-00-11".to_owned()),
                    ("cafe-b".to_owned(), "02-00-00-00-00-10".to_owned()),
                ]
        },
    );

    // B's link to HQ is cut: B keeps selling on its own.
    Hq::sh(&[
        "ip",
        "-n",
        &format!("{}-upstream", b.lab.name),
        "link",
        "set",
        "hq",
        "down",
    ]);
    let v2 = a.issue(&["--duration", "1h", "--devices", "1"]);
    let t0 = Instant::now();
    let (status, took, other) = std::thread::scope(|sc| {
        let waiting = sc.spawn(|| {
            let r = b.lab.curl("client4", &[v2["url"].as_str().unwrap()]);
            (r.0, t0.elapsed())
        });
        // While that redemption waits for HQ, the portal answers everyone else at once.
        std::thread::sleep(Duration::from_millis(300));
        let t1 = Instant::now();
        let page = b.lab.curl("client2", &[&format!("{}/", cafe::PORTAL)]).0;
        let other = (page, t1.elapsed());
        let (status, took) = waiting.join().unwrap();
        (status, took, other)
    });
    assert_eq!(status, 200);
    assert_eq!(other.0, 200);
    println!("meanwhile another guest's page took {:?}", other.1);
    assert!(other.1 < Duration::from_millis(500), "{:?}", other.1);
    assert!(
        took > other.1 + Duration::from_millis(300),
        "the page came first"
    );
    println!("a redemption at B with HQ unreachable took {took:?} (radius_timeout_ms 1000)");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(b.log().contains("decides"), "{}", b.log());
    assert_eq!(b.lab.internet("client4", false), 204);
}
