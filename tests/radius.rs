//! RADIUS accounting against a real FreeRADIUS (Debian's `freeradius`, started by the test on
//! a loopback port with the smallest config that accepts accounting and writes it with the
//! `detail` module). The sessions are driven directly (in-memory firewall, real store, the
//! daemon's own sender task): Start/Interim/Stop arrive with the right attributes; records
//! made while the server is down, across a restart of the daemon, arrive exactly once; a
//! retransmission (a small UDP proxy drops the first sends) has a new Identifier and a larger
//! Acct-Delay-Time. And the daemon itself in the lab (`tests/common/cafe.rs`, needs root and
//! namespaces), with FreeRADIUS in the upstream namespace: two phones' Starts, the uplink cut
//! for two minutes with a kick, an Interim-Update falling due, a `kill -9` and restart, the
//! uplink back with the server down, then the server back: every record in the detail file
//! exactly once, octets equal to the vouchers' counts, the outbox size in `wifiposd status`.
//! Under CI=true a missing freeradius (or namespaces) fails the test.

#[path = "common/cafe.rs"]
mod cafe;
mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::till::{key, key_id, token, wall_now};
use common::wait_for;
use wifipos::config::Config;
use wifipos::firewall::MemoryFirewall;
use wifipos::keys::{KeyId, Keyring};
use wifipos::mac::Mac;
use wifipos::portal::Gate;
use wifipos::radius::sender::{self, Timing};
use wifipos::sessions::Sessions;
use wifipos::store::{AcctChange, Delta, Store, MAX_OUTBOX_ROWS};

use common::freeradius::{have_freeradius, Radius, SECRET};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: u8,
    authenticator: Vec<u8>,
    session_id: String,
    status: u32,
    delay: u32,
    dropped: bool,
}

/// A UDP relay between the sender and the server that records every request and drops the
/// next `drop` ones (a lost packet, to see the retransmission).
struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    drop: Arc<AtomicUsize>,
    /// Forward the next ones with a wrong Message-Authenticator (and a Request Authenticator
    /// made right again for it, so only the Message-Authenticator is wrong).
    forge_ma: Arc<AtomicUsize>,
    /// Answers reach the sender this many milliseconds late.
    late_ms: Arc<AtomicUsize>,
}

fn parse_request(p: &[u8]) -> Option<Seen> {
    if p.len() < 20 || p[0] != 4 {
        return None;
    }
    let mut seen = Seen {
        id: p[1],
        authenticator: p[4..20].to_vec(),
        session_id: String::new(),
        status: 0,
        delay: 0,
        dropped: false,
    };
    let mut a = &p[20..];
    while a.len() >= 2 && a[1] >= 2 && a[1] as usize <= a.len() {
        let (t, v) = (a[0], &a[2..a[1] as usize]);
        let n = |v: &[u8]| u32::from_be_bytes(v.try_into().unwrap_or([0; 4]));
        match t {
            40 => seen.status = n(v),
            41 => seen.delay = n(v),
            44 => seen.session_id = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
        a = &a[a[1] as usize..];
    }
    Some(seen)
}

impl Proxy {
    fn new(server: SocketAddr) -> Proxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        let addr = front.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let drop = Arc::new(AtomicUsize::new(0));
        let forge_ma = Arc::new(AtomicUsize::new(0));
        let late_ms = Arc::new(AtomicUsize::new(0));
        let late = late_ms.clone();
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (seen, drop, client) = (seen.clone(), drop.clone(), client.clone());
            let forge = forge_ma.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    *client.lock().unwrap() = Some(from);
                    let Some(mut s) = parse_request(&buf[..n]) else {
                        continue;
                    };
                    s.dropped = drop
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                        .is_ok();
                    let dropped = s.dropped;
                    seen.lock().unwrap().push(s);
                    let forged = forge
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                        .is_ok();
                    if forged {
                        // The Message-Authenticator is the last attribute.
                        buf[n - 1] ^= 1;
                        buf[4..20].fill(0);
                        let mut h = <md5::Md5 as md5::Digest>::new();
                        md5::Digest::update(&mut h, &buf[..n]);
                        md5::Digest::update(&mut h, SECRET.as_bytes());
                        buf[4..20].copy_from_slice(&md5::Digest::finalize(h));
                    }
                    if !dropped {
                        let _ = back.send(&buf[..n]);
                    }
                }
            });
        }
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // Errors (the server is down: ICMP port unreachable) are not the end.
                if let Ok(n) = back.recv(&mut buf) {
                    if let Some(c) = *client.lock().unwrap() {
                        let ms = late.load(Ordering::SeqCst) as u64;
                        let (front, answer) = (front.try_clone().unwrap(), buf[..n].to_vec());
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            let _ = front.send_to(&answer, c);
                        });
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Proxy {
            addr,
            seen,
            drop,
            forge_ma,
            late_ms,
        }
    }
}

fn sessions(db: &Path, server: SocketAddr) -> Sessions {
    let cfg = Config {
        venue: "Cafe Nord".into(),
        radius_server: Some(server),
        radius_secret: SECRET.into(),
        radius_interim_s: 60,
        ..Config::default()
    };
    let mut s = Sessions::new(
        Store::open(db).unwrap(),
        Box::new(MemoryFirewall::new()),
        Keyring::new([key().verifying_key()]),
        cfg,
    );
    s.restore(wall_now()).unwrap();
    s
}

fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

/// Runs the daemon's sender for `s` until `done` or `limit`; returns whether `done` came.
fn run_sender(
    s: &Rc<RefCell<Sessions>>,
    timing: Timing,
    limit: Duration,
    done: impl Fn(&Sessions) -> bool,
) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let task = tokio::task::spawn_local(sender::run(s.clone(), timing));
        let t = Instant::now();
        let ok = loop {
            if done(&s.borrow()) {
                break true;
            }
            if t.elapsed() > limit {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        task.abort();
        ok
    })
}

fn empty(s: &Sessions) -> bool {
    s.store.outbox_len().unwrap() == 0
}

fn fast() -> Timing {
    Timing {
        first: Duration::from_millis(1000),
        max: Duration::from_millis(2000),
        idle: Duration::from_millis(50),
    }
}

#[test]
fn start_interim_and_stop_reach_freeradius_with_their_attributes() {
    if !have_freeradius() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut radius = Radius::new(dir.path());
    radius.start();
    let t = wall_now();
    let s = Rc::new(RefCell::new(sessions(
        &dir.path().join("w.db"),
        radius.addr(),
    )));
    let (a, b) = (mac(0x0a), mac(0x0b));
    let kid = key_id();
    {
        let mut s = s.borrow_mut();
        let tok = token(41, 2, t);
        s.redeem(&tok, a, t).unwrap();
        s.redeem(&tok, b, t).unwrap();
        // a uploaded 5 000 000 000 bytes (over 2^32: one gigaword) and downloaded 123 456.
        s.store
            .add_usage(&[Delta {
                mac: a,
                up: 5_000_000_000,
                down: 123_456,
                active_at: Some(t + 30),
            }])
            .unwrap();
        assert_eq!(s.account_interims(t + 30), 0, "not due yet");
        assert_eq!(s.account_interims(t + 60), 2);
        // b's bytes after its interim: only its device row has them when it is kicked.
        s.store
            .add_usage(&[Delta {
                mac: b,
                up: 777,
                down: 888,
                active_at: Some(t + 65),
            }])
            .unwrap();
        // b kicked by the venue, a's hour runs out.
        let kick = s.store.kick(kid, 41, b, t + 70).unwrap().unwrap();
        s.apply(&[kick], t + 70).unwrap();
        assert_eq!(s.end_due(t + 3600), 1);
        assert_eq!(s.store.outbox_len().unwrap(), 6);
        assert_eq!(s.store.acct_sessions(None).unwrap().len(), 0);
    }
    let started = Instant::now();
    assert!(run_sender(
        &s,
        Timing::default(),
        Duration::from_secs(10),
        empty
    ));
    println!(
        "6 records delivered in {} ms",
        started.elapsed().as_millis()
    );
    let recs = radius.detail();
    assert_eq!(recs.len(), 6, "{recs:#?}");
    let get = |r: &HashMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let of = |m: &str, status: &str| {
        recs.iter()
            .find(|r| get(r, "Calling-Station-Id") == m && get(r, "Acct-Status-Type") == status)
            .unwrap_or_else(|| panic!("no {status} of {m} in {recs:#?}"))
    };
    let user = format!("{kid}:41");
    for m in ["02-00-00-00-00-0A", "02-00-00-00-00-0B"] {
        for st in ["Start", "Interim-Update", "Stop"] {
            let r = of(m, st);
            assert_eq!(get(r, "User-Name"), user);
            assert_eq!(get(r, "NAS-Identifier"), "Cafe Nord");
            assert_eq!(get(r, "Called-Station-Id"), "Cafe Nord");
            assert_eq!(get(r, "NAS-Port-Type"), "Wireless-802.11");
            assert!(r.contains_key("Event-Timestamp"), "{r:?}");
            assert!(r.contains_key("Acct-Delay-Time"), "{r:?}");
            assert_eq!(
                get(r, "Acct-Session-Id"),
                get(of(m, "Start"), "Acct-Session-Id"),
                "one session id per device session"
            );
        }
    }
    assert_ne!(
        get(of("02-00-00-00-00-0A", "Start"), "Acct-Session-Id"),
        get(of("02-00-00-00-00-0B", "Start"), "Acct-Session-Id")
    );
    let ia = of("02-00-00-00-00-0A", "Interim-Update");
    assert_eq!(get(ia, "Acct-Session-Time"), "60");
    assert_eq!(
        get(ia, "Acct-Input-Octets"),
        (5_000_000_000u64 & 0xffff_ffff).to_string()
    );
    assert_eq!(get(ia, "Acct-Input-Gigawords"), "1");
    assert_eq!(get(ia, "Acct-Output-Octets"), "123456");
    assert_eq!(get(ia, "Acct-Output-Gigawords"), "0");
    let sa = of("02-00-00-00-00-0A", "Stop");
    assert_eq!(get(sa, "Acct-Terminate-Cause"), "Session-Timeout");
    assert_eq!(get(sa, "Acct-Session-Time"), "3600");
    assert_eq!(get(sa, "Acct-Input-Gigawords"), "1");
    let sb = of("02-00-00-00-00-0B", "Stop");
    assert_eq!(get(sb, "Acct-Terminate-Cause"), "Admin-Reset");
    assert_eq!(get(sb, "Acct-Session-Time"), "70");
    assert_eq!(
        (get(sb, "Acct-Input-Octets"), get(sb, "Acct-Output-Octets")),
        ("777".into(), "888".into()),
        "the kicked device's final counts"
    );
    assert!(!of("02-00-00-00-00-0A", "Start").contains_key("Acct-Session-Time"));
}

/// The key a detail record is unique by.
fn record_key(r: &HashMap<String, String>) -> (String, String, String) {
    (
        r.get("Acct-Session-Id").cloned().unwrap_or_default(),
        r.get("Acct-Status-Type").cloned().unwrap_or_default(),
        r.get("Event-Timestamp").cloned().unwrap_or_default(),
    )
}

#[test]
fn records_made_while_the_server_is_down_arrive_once_after_a_restart_and_retransmissions_change_id_and_delay(
) {
    if !have_freeradius() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut radius = Radius::new(dir.path());
    radius.start();
    let proxy = Proxy::new(radius.addr());
    let t = wall_now();
    let tok = |serial| token(serial, 3, t);

    // 1. A lost packet: the first two sends of a Start are dropped.
    let s = Rc::new(RefCell::new(sessions(&db, proxy.addr)));
    proxy.drop.store(2, Ordering::SeqCst);
    s.borrow_mut().redeem(&tok(1), mac(1), t).unwrap();
    let started = Instant::now();
    assert!(run_sender(&s, fast(), Duration::from_secs(10), empty));
    let took = started.elapsed();
    let sends: Vec<Seen> = proxy.seen.lock().unwrap().clone();
    println!("one Start, two sends lost: {sends:?}, delivered after {took:?}");
    assert_eq!(sends.len(), 3);
    assert_eq!(
        sends.iter().map(|x| x.dropped).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert!(sends
        .iter()
        .all(|x| x.status == 1 && x.session_id == sends[0].session_id));
    for w in sends.windows(2) {
        assert_ne!(w[0].id, w[1].id, "a retransmission gets a new Identifier");
        assert!(
            w[1].delay > w[0].delay,
            "and a larger Acct-Delay-Time: {sends:?}"
        );
        assert_ne!(w[0].authenticator, w[1].authenticator);
    }
    // The waits double: 1 s, then 2 s.
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert_eq!(radius.detail().len(), 1);

    // 2. The server goes away; devices come, report and leave.
    radius.stop();
    let t2 = wall_now();
    {
        let mut s = s.borrow_mut();
        s.redeem(&tok(2), mac(2), t2).unwrap();
        s.redeem(&tok(2), mac(3), t2).unwrap();
        s.redeem(&tok(3), mac(4), t2).unwrap();
        assert_eq!(s.account_interims(t + 70), 4, "four interims");
        let kid = key_id();
        let actions = s.store.revoke(kid, 3, t + 80).unwrap();
        s.apply(&actions, t + 80).unwrap();
    }
    let made = 3 + 4 + 1;
    assert_eq!(s.borrow().store.outbox_len().unwrap(), made);
    // The sender tries for 4 s: nothing is acknowledged.
    assert!(!run_sender(&s, fast(), Duration::from_secs(4), empty));
    let oldest = s.borrow().store.outbox_oldest().unwrap().unwrap();
    assert!(oldest.tries >= 2, "{oldest:?}");
    assert_eq!(s.borrow().store.outbox_len().unwrap(), made);
    let sends_while_down = proxy.seen.lock().unwrap().len() - 3;
    // The daemon restarts (a new store and sessions on the same file), and a device's time
    // ends while the server is still away.
    drop(s);
    let s = Rc::new(RefCell::new(sessions(&db, proxy.addr)));
    assert_eq!(s.borrow().store.outbox_len().unwrap(), made);
    let stops = s.borrow_mut().account_interims(t + 3600 + 10);
    assert_eq!(
        stops, 3,
        "three sessions ended (time up) while nobody looked"
    );
    let made = made + 3;
    // The server comes back.
    radius.start();
    let started = Instant::now();
    assert!(run_sender(&s, fast(), Duration::from_secs(30), empty));
    println!(
        "{made} records held across a restart ({sends_while_down} sends while the server was down) delivered in {} ms",
        started.elapsed().as_millis()
    );
    let recs = radius.detail();
    assert_eq!(recs.len(), 1 + made as usize, "{recs:#?}");
    let mut keys: Vec<_> = recs.iter().map(record_key).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "no record twice");
    // The Starts made when the server went away waited at least the 4 s of tries.
    let late: Vec<u32> = recs
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
        .skip(1)
        .map(|r| r["Acct-Delay-Time"].parse().unwrap())
        .collect();
    println!("Acct-Delay-Time of the Starts held: {late:?}");
    assert_eq!(late.len(), 3);
    assert!(late.iter().all(|d| *d >= 4), "{late:?}");
    let revoked: Vec<_> = recs
        .iter()
        .filter(|r| r.get("Acct-Terminate-Cause").map(String::as_str) == Some("Admin-Reset"))
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].get("Calling-Station-Id").map(String::as_str),
        Some("02-00-00-00-00-04")
    );
}

#[test]
fn a_wrong_secret_is_not_taken_for_an_acknowledgement() {
    if !have_freeradius() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut radius = Radius::new(dir.path());
    radius.start();
    let t = wall_now();
    let mut cfg_s = sessions(&dir.path().join("w.db"), radius.addr());
    cfg_s.cfg.radius_secret = "not-the-secret".into();
    let s = Rc::new(RefCell::new(cfg_s));
    s.borrow_mut().redeem(&token(9, 1, t), mac(9), t).unwrap();
    assert!(!run_sender(&s, fast(), Duration::from_secs(2), empty));
    assert_eq!(s.borrow().store.outbox_len().unwrap(), 1, "kept for later");
    assert!(radius.detail().is_empty());
    // With the right secret it goes.
    s.borrow_mut().cfg.radius_secret = SECRET.into();
    assert!(run_sender(&s, fast(), Duration::from_secs(10), empty));
    assert_eq!(radius.detail().len(), 1);
}

#[test]
fn freeradius_checks_the_message_authenticator() {
    if !have_freeradius() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut radius = Radius::new(dir.path());
    radius.start();
    let proxy = Proxy::new(radius.addr());
    proxy.forge_ma.store(1, Ordering::SeqCst);
    let t = wall_now();
    let s = Rc::new(RefCell::new(sessions(&dir.path().join("w.db"), proxy.addr)));
    s.borrow_mut().redeem(&token(9, 1, t), mac(9), t).unwrap();
    assert!(run_sender(&s, fast(), Duration::from_secs(10), empty));
    assert_eq!(
        proxy.seen.lock().unwrap().len(),
        2,
        "the forged one was not answered"
    );
    assert_eq!(radius.detail().len(), 1);
    let log = std::fs::read_to_string(dir.path().join("radiusd-1.log")).unwrap();
    assert!(log.contains("invalid Message-Authenticator"), "{log}");
}

#[test]
fn a_late_answer_to_an_earlier_send_counts() {
    if !have_freeradius() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut radius = Radius::new(dir.path());
    radius.start();
    let proxy = Proxy::new(radius.addr());
    // Every answer takes 1.5 s: the first send's answer arrives while the retransmission
    // (sent at 1 s, waiting 2 s) waits.
    proxy.late_ms.store(1500, Ordering::SeqCst);
    let t = wall_now();
    let s = Rc::new(RefCell::new(sessions(&dir.path().join("w.db"), proxy.addr)));
    s.borrow_mut().redeem(&token(9, 1, t), mac(9), t).unwrap();
    let started = Instant::now();
    assert!(run_sender(&s, fast(), Duration::from_secs(10), empty));
    let took = started.elapsed();
    println!("delivered after {took:?} with answers 1.5 s late");
    assert!(took < Duration::from_millis(2300), "{took:?}");
    assert_eq!(proxy.seen.lock().unwrap().len(), 2);
    // The server logged both sends: accounting is at least once.
    std::thread::sleep(Duration::from_millis(200));
    let recs = radius.detail();
    assert_eq!(recs.len(), 2);
    assert_eq!(record_key(&recs[0]), record_key(&recs[1]));
}

#[test]
fn the_outbox_drops_the_oldest_interims_first_never_start_or_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("w.db")).unwrap();
    let m = mac(1);
    let change = |i: u64| AcctChange::Interim {
        key_id: "00000000".into(),
        serial: i,
        mac: m,
        up_bytes: 0,
        down_bytes: 0,
    };
    let start = AcctChange::Start {
        key_id: "00000000".into(),
        serial: 0,
        mac: m,
        session_id: "s".into(),
        started_at: 100,
    };
    let mut rows = vec![(start, 1, vec![1u8])];
    rows.extend((0..MAX_OUTBOX_ROWS as u64).map(|i| (change(i), 3, vec![3u8, i as u8])));
    assert_eq!(
        store.acct_write(&rows, 100).unwrap(),
        1,
        "one interim dropped"
    );
    assert_eq!(store.outbox_len().unwrap(), MAX_OUTBOX_ROWS);
    let oldest = store.outbox_oldest().unwrap().unwrap();
    assert_eq!(
        (oldest.kind, oldest.attributes.clone()),
        (1, vec![1]),
        "the Start stays"
    );
    // Full of Stops: every one is kept, the interims give way.
    let stops: Vec<_> = (0..50)
        .map(|i| {
            (
                AcctChange::Stop {
                    key_id: "00000000".into(),
                    serial: i,
                    mac: m,
                },
                2,
                vec![2u8],
            )
        })
        .collect();
    assert_eq!(store.acct_write(&stops, 101).unwrap(), 50);
    assert_eq!(store.outbox_len().unwrap(), MAX_OUTBOX_ROWS);
    store.outbox_done(oldest.id).unwrap();
    let next = store.outbox_oldest().unwrap().unwrap();
    assert_eq!(next.kind, 3);
    assert_eq!(
        next.attributes,
        vec![3u8, 51],
        "interims 0..=50 were dropped, oldest first"
    );
}

#[test]
fn a_schema_4_database_migrates_to_5_with_its_sessions() {
    // The previous release's v3 file, brought to v4 exactly as that release did (SCHEMA_V4).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    std::fs::copy("tests/fixtures/store/v3-release-748118e.sqlite", &path).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(wifipos::store::SCHEMA_V4).unwrap();
        c.execute_batch(
            "UPDATE devices SET up_bytes = 1000, down_bytes = 2000; PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 5);
    assert_eq!(wifipos::store::SCHEMA_VERSION, 5);
    assert!(s.integrity_ok().unwrap());
    assert_eq!(s.outbox_len().unwrap(), 0);
    assert!(s.acct_sessions(None).unwrap().is_empty());
    let live = s.sessions(1_796_200_300).unwrap();
    assert_eq!(live.len(), 2);
    assert!(live
        .iter()
        .all(|l| (l.up_bytes, l.down_bytes) == (1000, 2000)));
}

/// The status line about RADIUS: the records waiting, or `None` without the line.
fn waiting(cafe: &cafe::Cafe) -> Option<u64> {
    let o = cafe.admin(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("RADIUS accounting to"))?;
    line.split(": ").nth(1)?.split(' ').next()?.parse().ok()
}

/// The bytes a voucher counted (`wifiposd vouchers`), by serial.
fn used_bytes(cafe: &cafe::Cafe, serial: u64) -> u64 {
    let o = cafe.admin(&["vouchers", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["vouchers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["serial"].as_u64() == Some(serial))
        .and_then(|v| v["used_bytes"].as_u64())
        .unwrap_or_else(|| panic!("no voucher {serial}: {j}"))
}

fn octets(r: &HashMap<String, String>) -> u64 {
    ["Acct-Input-Octets", "Acct-Output-Octets"]
        .iter()
        .map(|k| r[*k].parse::<u64>().unwrap())
        .sum()
}

/// The issue's outage, in the lab: two phones online with FreeRADIUS upstream and
/// `radius_interim 60`; the router's uplink is cut for two minutes. Meanwhile one phone is
/// kicked (its Stop waits), the other's Interim-Update falls due (it waits too), the daemon is
/// killed (`kill -9`) and started again, and the server is down when the link comes back. When
/// the server returns, every record arrives exactly once: Start, Interim-Update and Stop for
/// each device session as due, octets equal to the vouchers' counts, Acct-Delay-Time as long
/// as the wait.
#[test]
fn the_daemon_reports_to_freeradius_upstream_across_a_two_minute_outage_and_a_restart() {
    if !have_freeradius() {
        return;
    }
    let Some(cafe) = cafe::Cafe::open("rd") else {
        return;
    };
    let rdir = cafe.path("radius");
    std::fs::create_dir_all(&rdir).unwrap();
    let mut radius = Radius::at(
        &rdir,
        IpAddr::from([10, 99, 0, 2]),
        1813,
        IpAddr::from([10, 99, 0, 1]),
        Some(format!("{}-upstream", cafe.lab.name)),
    );
    radius.start();
    cafe.write_config(&format!(
        "\toption radius_server '10.99.0.2'\n\toption radius_secret '{SECRET}'\n\toption radius_nas_id 'cafe-test'\n\toption radius_interim '60'\n"
    ));
    let mut daemon = cafe.start();
    let v1 = cafe.issue(&["--duration", "1h", "--devices", "1"]);
    let v2 = cafe.issue(&["--duration", "1h", "--devices", "1"]);
    let serial = |v: &serde_json::Value| v["serial"].as_u64().unwrap();
    for (phone, v) in [("client", &v1), ("client2", &v2)] {
        assert_eq!(cafe.lab.curl(phone, &[v["url"].as_str().unwrap()]).0, 200);
    }
    wait_for("the Starts", Duration::from_secs(10), || {
        radius.detail().len() == 2
    });
    let start = radius
        .detail()
        .into_iter()
        .find(|r| r["Calling-Station-Id"] == "02-00-00-00-00-10")
        .unwrap();
    assert_eq!(start["Acct-Status-Type"], "Start");
    assert_eq!(start["NAS-Identifier"], "cafe-test");
    assert_eq!(start["Packet-Src-IP-Address"], "10.99.0.1");
    assert_eq!(
        start["Framed-IP-Address"], "10.20.0.10",
        "from the neighbour table"
    );
    wait_for("an empty outbox", Duration::from_secs(5), || {
        waiting(&cafe) == Some(0)
    });
    // Some traffic for the counters.
    for phone in ["client", "client2"] {
        for _ in 0..5 {
            assert_eq!(cafe.lab.internet(phone, false), 204);
        }
    }

    // The uplink goes down for two minutes (no route to the server).
    let link = |state: &str| {
        let o = cafe.lab.run("router", "ip", &["link", "set", "wan", state]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let cut = Instant::now();
    link("down");
    let o = cafe.admin(&["kick", "02:00:00:00:00:10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("the Stop queued", Duration::from_secs(5), || {
        waiting(&cafe) == Some(1)
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(waiting(&cafe), Some(1), "not acknowledged by anyone");
    let tries: i64 = rusqlite::Connection::open(cafe.path("wifipos.db"))
        .unwrap()
        .query_row("SELECT MAX(tries) FROM radius_outbox", [], |r| r.get(0))
        .unwrap();
    println!("{tries} sends in ~5 s without a route");
    assert!((1..=4).contains(&tries), "backing off, not busy: {tries}");
    // The second phone's Interim-Update falls due during the cut (60 s after its Start).
    wait_for("the Interim-Update queued", Duration::from_secs(75), || {
        waiting(&cafe) == Some(2)
    });
    // The daemon is killed and started again; the server is down too when the link returns.
    daemon.kill9();
    drop(daemon);
    radius.stop();
    let _daemon = cafe.start();
    assert_eq!(waiting(&cafe), Some(2), "kept across the restart");
    let used = (
        used_bytes(&cafe, serial(&v1)),
        used_bytes(&cafe, serial(&v2)),
    );
    assert!(used.0 > 0 && used.1 > 0, "{used:?}");
    std::thread::sleep(Duration::from_secs(120).saturating_sub(cut.elapsed()));
    link("up");
    println!("uplink back after {:?}", cut.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let queued = waiting(&cafe).unwrap();
    assert!(queued >= 2, "the server is still down: {queued} waiting");

    // The server comes back: everything arrives, once.
    radius.start();
    let t = Instant::now();
    wait_for("the outbox delivered", Duration::from_secs(40), || {
        waiting(&cafe) == Some(0)
    });
    println!(
        "{queued} records delivered {:?} after the server came back",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let recs = radius.detail();
    // Exactly once: no record twice (a session's status and event time name it).
    let mut seen = std::collections::HashSet::new();
    for r in &recs {
        let key = (
            r["Acct-Session-Id"].clone(),
            r["Acct-Status-Type"].clone(),
            r["Event-Timestamp"].clone(),
        );
        assert!(seen.insert(key), "delivered twice: {r:?}");
    }
    let of = |mac: &str, status: &str| -> Vec<HashMap<String, String>> {
        recs.iter()
            .filter(|r| r["Calling-Station-Id"] == mac && r["Acct-Status-Type"] == status)
            .cloned()
            .collect()
    };
    let (a, b) = ("02-00-00-00-00-10", "02-00-00-00-00-11");
    assert_eq!(of(a, "Start").len(), 1, "{recs:#?}");
    assert_eq!(of(b, "Start").len(), 1, "{recs:#?}");
    assert!(of(a, "Interim-Update").is_empty(), "{recs:#?}");
    let stops = of(a, "Stop");
    assert_eq!(stops.len(), 1, "{recs:#?}\n{}", cafe.log());
    let stop = &stops[0];
    assert_eq!(stop["Acct-Terminate-Cause"], "Admin-Reset");
    assert_eq!(stop["Acct-Session-Id"], start["Acct-Session-Id"]);
    println!(
        "Stop: {} octets; the voucher counted {} bytes",
        octets(stop),
        used.0
    );
    assert_eq!(
        octets(stop),
        used.0,
        "the Stop reports the device's counters"
    );
    let delay: u64 = stop["Acct-Delay-Time"].parse().unwrap();
    assert!(delay >= 120, "{stop:?}");
    // The second phone: its Interim-Updates (one per 60 s, the one made in the cut first)
    // with its counters (no traffic since the cut: all equal to the voucher's count).
    let interims = of(b, "Interim-Update");
    assert!(
        (2..=3).contains(&interims.len()),
        "{} interims: {recs:#?}",
        interims.len()
    );
    for i in &interims {
        assert_eq!(octets(i), used.1, "{i:?}");
        assert_eq!(i["Acct-Session-Id"], of(b, "Start")[0]["Acct-Session-Id"]);
    }
    let first: u64 = interims[0]["Acct-Delay-Time"].parse().unwrap();
    assert!(
        first >= 50,
        "the first Interim-Update waited out the cut: {first} s"
    );
    assert!(of(b, "Stop").is_empty(), "the second phone is still online");
}

/// The Acct-Terminate-Cause of every Stop in the outbox, by Calling-Station-Id, oldest first
/// (the outbox is emptied).
fn stops_in_outbox(s: &mut Sessions) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    while let Some(r) = s.store.outbox_oldest().unwrap() {
        s.store.outbox_done(r.id).unwrap();
        let attrs = wifipos::radius::packet::attributes(&r.attributes).unwrap();
        let get = |t: u8| attrs.iter().find(|a| a.0 == t).map(|a| a.1.to_vec());
        if r.kind != 2 {
            continue;
        }
        let station = String::from_utf8(get(31).unwrap()).unwrap();
        let cause = u32::from_be_bytes(get(49).unwrap().try_into().unwrap());
        out.push((station, cause));
    }
    out
}

#[test]
fn every_end_of_access_has_its_terminate_cause() {
    let dir = tempfile::tempdir().unwrap();
    let t = wall_now();
    let mut s = sessions(&dir.path().join("w.db"), "127.0.0.1:9".parse().unwrap());
    s.cfg.device_idle_replace_min = 1;
    let kid = key_id();
    // A 1 MiB data cap used up: Session-Timeout (RFC 2866 has no data-limit cause).
    let capped = wifipos::voucher::Voucher {
        key_id: kid,
        serial: 50,
        issued_at: t as u32,
        redeem_by: 0,
        duration_s: 3600,
        max_devices: 1,
        purchase_ref: String::new(),
        ext: Some(wifipos::voucher::Ext::with_limits(
            wifipos::voucher::Limits {
                data_cap_mib: Some(1),
                ..Default::default()
            },
        )),
    }
    .sign(&key())
    .unwrap();
    s.redeem(&capped, mac(1), t).unwrap();
    s.store
        .add_usage(&[Delta {
            mac: mac(1),
            up: 1,
            down: 1 << 20,
            active_at: Some(t + 1),
        }])
        .unwrap();
    s.meter_round(t + 2);
    assert_eq!(stops_in_outbox(&mut s), [("02-00-00-00-00-01".into(), 5)]);
    // Revoked: Admin-Reset.
    s.redeem(&token(51, 1, t), mac(2), t).unwrap();
    let actions = s.store.revoke(kid, 51, t + 3).unwrap();
    s.apply(&actions, t + 3).unwrap();
    assert_eq!(stops_in_outbox(&mut s), [("02-00-00-00-00-02".into(), 6)]);
    // An idle device gives its place to a new one: Idle-Timeout.
    let one = token(52, 1, t);
    s.redeem(&one, mac(3), t).unwrap();
    s.redeem(&one, mac(4), t + 120).unwrap();
    assert_eq!(stops_in_outbox(&mut s), [("02-00-00-00-00-03".into(), 4)]);
    // Time up while the daemon was down: the next look finds it (Session-Timeout).
    drop(s);
    let mut s = sessions(&dir.path().join("w.db"), "127.0.0.1:9".parse().unwrap());
    assert_eq!(s.account_interims(t + 3601), 1);
    assert_eq!(stops_in_outbox(&mut s), [("02-00-00-00-00-04".into(), 5)]);
    assert!(s.store.acct_sessions(None).unwrap().is_empty());
    // Off: nothing is queued.
    s.cfg.radius_server = None;
    let t5 = t + 3700;
    s.redeem(&token(53, 1, t), mac(5), t5).unwrap();
    assert_eq!(s.store.outbox_len().unwrap(), 0);
    // Turned on (a reload): the device that joined meanwhile gets its Start, dated when it
    // joined, once; its interims count from then.
    s.cfg.radius_server = Some("127.0.0.1:9".parse().unwrap());
    assert_eq!(s.account_missing_starts(t5 + 30), 1);
    assert_eq!(s.account_missing_starts(t5 + 31), 0);
    let start = s.store.outbox_oldest().unwrap().unwrap();
    s.store.outbox_done(start.id).unwrap();
    let attrs = wifipos::radius::packet::attributes(&start.attributes).unwrap();
    let get = |t: u8| {
        attrs
            .iter()
            .find(|a| a.0 == t)
            .map(|a| a.1.to_vec())
            .unwrap()
    };
    assert_eq!(
        get(55),
        (t5 as u32).to_be_bytes(),
        "Event-Timestamp: when it joined"
    );
    assert_eq!(get(44), format!("020000000005-{t5}-53").into_bytes());
    assert_eq!(s.account_interims(t5 + 60), 1);
    let interim = s.store.outbox_oldest().unwrap().unwrap();
    let attrs = wifipos::radius::packet::attributes(&interim.attributes).unwrap();
    let time = attrs.iter().find(|a| a.0 == 46).unwrap().1;
    assert_eq!(
        time,
        60u32.to_be_bytes(),
        "Acct-Session-Time from when it joined"
    );
}

/// CPU seconds this thread has used (the sessions and the sender run on it).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split(' ').next().unwrap().parse::<f64>().unwrap() / 1e9
}

/// Issue 17's bench: 5 000 live sessions, their Starts, one round of Interim-Updates queued,
/// and all 10 000 records delivered to FreeRADIUS (`-f`, not debug). A benchmark, not a test
/// (so CI does not run it): `scripts/bench` runs it (`cargo test --all-features --test radius
/// -- --ignored --nocapture bench`).
#[test]
#[ignore = "benchmark: scripts/bench runs it"]
fn bench_interims_for_5000_sessions() {
    if !have_freeradius() {
        return;
    }
    const N: u32 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut radius = Radius::new(dir.path());
    radius.debug = false;
    radius.start();
    let t = wall_now();
    drop(Store::open(&db).unwrap());
    {
        let mut c = rusqlite::Connection::open(&db).unwrap();
        let tx = c.transaction().unwrap();
        for i in 0..N {
            tx.execute(
                "INSERT INTO vouchers (key_id, serial, first_redeemed_at, ends_at, duration_s, max_devices)
                 VALUES ('00000001', ?1, ?2, ?3, 86400, 1)",
                rusqlite::params![i, t, t + 86_400],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO devices (key_id, serial, mac, first_seen, last_seen, up_bytes, down_bytes)
                 VALUES ('00000001', ?1, ?2, ?3, ?3, ?4, ?5)",
                rusqlite::params![
                    i,
                    Mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]).to_string(),
                    t,
                    i64::from(i) * 1000,
                    i64::from(i) * 5000
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = Rc::new(RefCell::new(sessions(&db, radius.addr())));
    let (w, c) = (Instant::now(), cpu_s());
    {
        let mut s = s.borrow_mut();
        let kid = KeyId::from_hex("00000001").unwrap();
        for i in 0..N {
            s.account_start(
                kid,
                u64::from(i),
                Mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                t,
            );
        }
    }
    println!(
        "{N} Starts queued one by one (one transaction each, synchronous=FULL): {:.2} s wall, {:.2} s CPU",
        w.elapsed().as_secs_f64(),
        cpu_s() - c
    );
    let (w, c) = (Instant::now(), cpu_s());
    let n = s.borrow_mut().account_interims(t + 300);
    assert_eq!(n, N as usize);
    println!(
        "{n} Interim-Updates queued in one round: {:.3} s wall, {:.3} s CPU",
        w.elapsed().as_secs_f64(),
        cpu_s() - c
    );
    let (w, c) = (Instant::now(), cpu_s());
    assert!(run_sender(
        &s,
        Timing::default(),
        Duration::from_secs(600),
        empty
    ));
    let secs = w.elapsed().as_secs_f64();
    println!(
        "{} records delivered to FreeRADIUS on loopback, one at a time: {secs:.1} s, {:.0} records/s, {:.1} s CPU (daemon side)",
        2 * N,
        f64::from(2 * N) / secs,
        cpu_s() - c
    );
    radius.stop();
    let detail = std::fs::read_to_string(dir.path().join("detail")).unwrap();
    assert_eq!(
        detail.matches("Acct-Status-Type = Interim-Update").count(),
        N as usize
    );
}
