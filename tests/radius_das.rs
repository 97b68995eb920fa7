//! RADIUS Dynamic Authorization (RFC 5176) against the daemon in the lab
//! (`tests/common/cafe.rs`, needs root and namespaces), with `option radius_coa_port '3799'`
//! and FreeRADIUS's own `radclient` in the upstream namespace (10.99.0.2, the
//! `radius_server`) as the server: requests with the wrong secret, from a foreign address
//! (10.99.0.3 in the upstream, and a phone), with an old Event-Timestamp, for another
//! NAS-Identifier or an unknown MAC change nothing; a CoA with Session-Timeout 600 on a 1 h
//! voucher shortens the kernel element to ~600 s; a Disconnect by MAC takes the phone out of
//! the kernel set and frees its slot; a Disconnect by User-Name alone revokes the voucher (its
//! phone out, the voucher refused after); a retransmission is answered the same and applied
//! once; a SIGHUP moves the port. Under CI=true a missing radclient (or namespaces) fails the
//! test. And, without root, what a request does to real sessions (real store, in-memory
//! firewall): targeted by Acct-Session-Id, by MAC narrowed by User-Name, by a voucher never
//! used here.

#[path = "common/cafe.rs"]
mod cafe;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cafe::Cafe;
use common::till::{key, key_id, token, wall_now};
use common::wait_for;
use wifipos::config::Config;
use wifipos::firewall::MemoryFirewall;
use wifipos::keys::Keyring;
use wifipos::mac::Mac;
use wifipos::portal::Gate;
use wifipos::radius::das::{carry_out, Ask};
use wifipos::radius::packet::StatusType;
use wifipos::sessions::Sessions;
use wifipos::store::Store;

const SECRET: &str = "testing123";
const PHONE: &str = "02:00:00:00:00:10";
const PHONE2: &str = "02:00:00:00:00:11";

fn have_radclient() -> bool {
    let ok = Command::new("radclient")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("radclient (Debian package freeradius-utils, installed by scripts/setup) is required under CI=true");
        }
        eprintln!("SKIPPED: radclient is missing (apt-get install freeradius-utils)");
    }
    ok
}

/// What `radclient` got back: the reply's code name (`Disconnect-ACK`, `CoA-NAK`, …) and
/// its Error-Cause, or `None` for no answer.
#[derive(Debug)]
struct Reply {
    code: Option<String>,
    error_cause: Option<String>,
    took: Duration,
    out: String,
}

/// `radclient` in `host`'s namespace sends `command` (`disconnect` or `coa`) with `attrs`
/// (one `Name = value` a line) to the router's WAN address, one try with a 1 s wait.
fn radclient(cafe: &Cafe, host: &str, command: &str, secret: &str, attrs: &str) -> Reply {
    radclient_to(cafe, 3799, host, command, secret, attrs)
}

/// [`radclient`] to another port.
fn radclient_to(
    cafe: &Cafe,
    port: u16,
    host: &str,
    command: &str,
    secret: &str,
    attrs: &str,
) -> Reply {
    let t = Instant::now();
    let mut child = cafe
        .lab
        .cmd(host, "radclient")
        .args([
            "-x",
            "-r",
            "1",
            "-t",
            "1",
            &format!("10.99.0.1:{port}"),
            command,
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let code = out
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Received "))
        .and_then(|l| l.split(' ').next())
        .map(str::to_owned);
    let error_cause = out
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Error-Cause = "))
        .map(str::to_owned);
    Reply {
        code,
        error_cause,
        took,
        out,
    }
}

/// The kernel's `allowed` set: MAC → seconds until its element expires.
fn kernel_set(cafe: &Cafe) -> HashMap<String, u64> {
    cafe.lab.allowed_set().expect("the table is there")
}

/// A CoA-Request with Identifier `id` for voucher `user_name` setting Session-Timeout
/// `secs`, signed with [`SECRET`] (RFC 5176 §2.3), built here so it can be sent twice.
fn coa_request(id: u8, user_name: &str, secs: u32) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut attrs = vec![1, user_name.len() as u8 + 2];
    attrs.extend_from_slice(user_name.as_bytes());
    attrs.extend_from_slice(&[27, 6]);
    attrs.extend_from_slice(&secs.to_be_bytes());
    let len = (20 + attrs.len()) as u16;
    let mut p = vec![43, id];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&attrs);
    let mut h = Md5::new();
    h.update(&p);
    h.update(SECRET.as_bytes());
    let auth: [u8; 16] = h.finalize().into();
    p[4..20].copy_from_slice(&auth);
    p
}

/// Sends `packet` twice from one socket in the upstream namespace (10.99.0.2); the answers
/// in hex.
fn send_twice(cafe: &Cafe, packet: &[u8]) -> Vec<String> {
    let hex: String = packet.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n\
p=bytes.fromhex(sys.argv[1])\n\
for _ in range(2): s.sendto(p,('10.99.0.1',3799)); print(s.recvfrom(5000)[0].hex())\n";
    let o = cafe.lab.run("upstream", "python3", &["-c", script, &hex]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn disconnect_and_coa_from_the_radius_server_and_nobody_else() {
    if !have_radclient() {
        return;
    }
    let Some(cafe) = Cafe::open("da") else {
        return;
    };
    cafe.write_config(&format!(
        "\toption radius_server '10.99.0.2'\n\toption radius_secret '{SECRET}'\n\
         \toption radius_nas_id 'cafe-test'\n\toption radius_coa_port '3799'\n"
    ));
    let daemon = cafe.start();
    wait_for("the listener", Duration::from_secs(5), || {
        cafe.log().contains("listening on UDP 3799")
    });
    let v = cafe.issue(&["--duration", "1h", "--devices", "1"]);
    let url = v["url"].as_str().unwrap();
    let user_name = format!("{}:{}", v["key_id"].as_str().unwrap(), v["serial"]);
    assert_eq!(cafe.lab.curl("client", &[url]).0, 200);
    let set = kernel_set(&cafe);
    assert!(set[PHONE] > 3500, "{set:?}");
    let by_mac = "Calling-Station-Id = \"02-00-00-00-00-10\"\nNAS-Identifier = \"cafe-test\"\n";

    // Nothing changes for: the wrong secret (no answer), a foreign source (no answer), another
    // NAS (NAK 403), an unknown MAC (NAK 503), a CoA without Session-Timeout (NAK 402).
    let r = radclient(&cafe, "upstream", "disconnect", "wrong-secret", by_mac);
    assert_eq!(r.code, None, "{}", r.out);
    let extra = |args: &[&str]| {
        let o = cafe.lab.run("upstream", "ip", args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    extra(&["addr", "add", "10.99.0.3/24", "dev", "eth0"]);
    extra(&[
        "route",
        "add",
        "10.99.0.1/32",
        "dev",
        "eth0",
        "src",
        "10.99.0.3",
    ]);
    let r = radclient(&cafe, "upstream", "disconnect", SECRET, by_mac);
    assert_eq!(r.code, None, "from 10.99.0.3: {}", r.out);
    extra(&[
        "route",
        "del",
        "10.99.0.1/32",
        "dev",
        "eth0",
        "src",
        "10.99.0.3",
    ]);
    let r = radclient(&cafe, "client", "disconnect", SECRET, by_mac);
    assert_eq!(r.code, None, "from the phone: {}", r.out);
    let r = radclient(
        &cafe,
        "upstream",
        "disconnect",
        SECRET,
        "Calling-Station-Id = \"02-00-00-00-00-10\"\nNAS-Identifier = \"other-cafe\"\n",
    );
    assert_eq!(r.code.as_deref(), Some("Disconnect-NAK"), "{}", r.out);
    assert_eq!(
        r.error_cause.as_deref(),
        Some("NAS-Identification-Mismatch")
    );
    let r = radclient(
        &cafe,
        "upstream",
        "disconnect",
        SECRET,
        "Calling-Station-Id = \"02-00-00-00-00-99\"\n",
    );
    assert_eq!(r.code.as_deref(), Some("Disconnect-NAK"), "{}", r.out);
    assert_eq!(r.error_cause.as_deref(), Some("Session-Context-Not-Found"));
    let old = format!("{by_mac}Event-Timestamp = 1000000000\n");
    let r = radclient(&cafe, "upstream", "disconnect", SECRET, &old);
    assert_eq!(r.code, None, "a replay of 2001: {}", r.out);
    let r = radclient(&cafe, "upstream", "coa", SECRET, by_mac);
    assert_eq!(r.code.as_deref(), Some("CoA-NAK"), "{}", r.out);
    assert_eq!(r.error_cause.as_deref(), Some("Missing-Attribute"));
    let set = kernel_set(&cafe);
    assert!(set[PHONE] > 3500, "untouched: {set:?}");
    let log = cafe.log();
    assert!(
        log.contains("dropped 1 datagram(s) from an address that is not radius_server")
            && log.contains("last from 10.99.0.3"),
        "{log}"
    );
    assert!(log.contains("not signed with radius_secret"), "{log}");
    assert!(log.contains("Event-Timestamp more than 300 s"), "{log}");

    // A CoA with Session-Timeout 600 (MAC written aa:bb form): the element's timeout follows.
    let r = radclient(
        &cafe,
        "upstream",
        "coa",
        SECRET,
        "Calling-Station-Id = \"02:00:00:00:00:10\"\nSession-Timeout = 600\n",
    );
    assert_eq!(r.code.as_deref(), Some("CoA-ACK"), "{}", r.out);
    let left = kernel_set(&cafe)[PHONE];
    println!(
        "CoA Session-Timeout 600: kernel element {left} s left (answered in {:?})",
        r.took
    );
    assert!((590..=600).contains(&left), "{left}");

    // A Disconnect by MAC: the phone is out at the ACK, its slot free.
    let r = radclient(&cafe, "upstream", "disconnect", SECRET, by_mac);
    assert_eq!(r.code.as_deref(), Some("Disconnect-ACK"), "{}", r.out);
    let set = kernel_set(&cafe);
    println!(
        "Disconnect by MAC: radclient's round trip {:?}, the MAC gone at the ACK",
        r.took
    );
    assert!(!set.contains_key(PHONE), "{set:?}");
    assert_eq!(
        cafe.log()
            .matches("RADIUS Disconnect-Request from 10.99.0.2: ")
            .count(),
        3,
        "a NAK 403 and a NAK 503 before, one kick, no second action: {}",
        cafe.log()
    );
    let o = cafe.admin(&["events", "--since", "1h", "--json"]);
    let events = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        events.contains("slot freed; by RADIUS Disconnect-Request from 10.99.0.2"),
        "{events}"
    );
    assert!(
        events.contains("Session-Timeout 600 s; by RADIUS CoA-Request from 10.99.0.2"),
        "{events}"
    );
    // The slot is free: the second phone gets it.
    assert_eq!(cafe.lab.curl("client2", &[url]).0, 200);
    assert!(kernel_set(&cafe).contains_key(PHONE2));

    // A retransmission (the same Identifier and Request Authenticator) gets the same answer
    // and is not carried out twice (RFC 5080): one event.
    let answers = send_twice(&cafe, &coa_request(7, &user_name, 1200));
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].starts_with("2c07"), "a CoA-ACK: {answers:?}");
    let o = cafe.admin(&["events", "--since", "1h", "--json"]);
    let events = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        events.matches("Session-Timeout 1200 s; by RADIUS").count(),
        1,
        "{events}"
    );
    let left = kernel_set(&cafe)[PHONE2];
    assert!((1190..=1200).contains(&left), "{left}");

    // A Disconnect by User-Name alone: the voucher is revoked here.
    let r = radclient(
        &cafe,
        "upstream",
        "disconnect",
        SECRET,
        &format!("User-Name = \"{user_name}\"\n"),
    );
    assert_eq!(r.code.as_deref(), Some("Disconnect-ACK"), "{}", r.out);
    assert!(!kernel_set(&cafe).contains_key(PHONE2));
    let (status, page) = cafe.lab.curl("client2", &[url]);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("data-reason=\"revoked\""), "{page}");
    let o = cafe.admin(&["events", "--since", "1h", "--json"]);
    let events = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        events.contains("devices lose it; by RADIUS Disconnect-Request from 10.99.0.2"),
        "{events}"
    );

    // A reload moves the port.
    cafe.write_config(&format!(
        "\toption radius_server '10.99.0.2'\n\toption radius_secret '{SECRET}'\n\
         \toption radius_nas_id 'cafe-test'\n\toption radius_coa_port '3800'\n"
    ));
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for("the new port", Duration::from_secs(5), || {
        cafe.log().contains("listening on UDP 3800")
    });
    let unknown = "Calling-Station-Id = \"02-00-00-00-00-99\"\n";
    let r = radclient(&cafe, "upstream", "disconnect", SECRET, unknown);
    assert_eq!(r.code, None, "3799 closed: {}", r.out);
    let r = radclient_to(&cafe, 3800, "upstream", "disconnect", SECRET, unknown);
    assert_eq!(r.code.as_deref(), Some("Disconnect-NAK"), "{}", r.out);
}

fn allowed(s: &mut Sessions) -> HashMap<Mac, u64> {
    s.firewall
        .list_allowed()
        .unwrap()
        .into_iter()
        .map(|(m, d)| (m, d.as_secs()))
        .collect()
}

#[test]
fn a_request_reaches_the_session_device_or_voucher_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        venue: "Cafe Nord".into(),
        radius_server: Some("127.0.0.1:9".parse().unwrap()),
        radius_secret: SECRET.into(),
        radius_coa_port: Some(3799),
        ..Config::default()
    };
    let mut s = Sessions::new(
        Store::open(&dir.path().join("w.db")).unwrap(),
        Box::new(MemoryFirewall::new()),
        Keyring::new([key().verifying_key()]),
        cfg,
    );
    let t = wall_now();
    s.restore(t).unwrap();
    let kid = key_id();
    let (m1, m2, m3) = (
        Mac([2, 0, 0, 0, 0, 1]),
        Mac([2, 0, 0, 0, 0, 2]),
        Mac([2, 0, 0, 0, 0, 3]),
    );
    s.redeem(&token(1, 2, t), m1, t).unwrap();
    s.redeem(&token(1, 2, t), m2, t).unwrap();
    s.redeem(&token(2, 1, t), m3, t).unwrap();
    let from = "10.99.0.2".parse().unwrap();
    let ask = |timeout, session: Option<&str>, mac, voucher| Ask {
        session_timeout: timeout,
        session: session.map(str::to_owned),
        mac,
        voucher,
    };
    // By Acct-Session-Id: that device, off that voucher, with its Stop queued.
    let id = s.store.acct_sessions(Some(m1)).unwrap()[0]
        .session_id
        .clone();
    let done = carry_out(&mut s, &ask(None, Some(&id), None, None), from, t).unwrap();
    assert_eq!(done.devices, vec![m1]);
    let a = allowed(&mut s);
    assert!(!a.contains_key(&m1) && a.contains_key(&m2), "{a:?}");
    let mut stops = 0;
    while let Some(r) = s.store.outbox_oldest().unwrap() {
        s.store.outbox_done(r.id).unwrap();
        if wifipos::radius::packet::status_of(&r.attributes) == Some(StatusType::Stop) {
            stops += 1;
        }
    }
    assert_eq!(stops, 1, "m1's Stop");
    // That session is over; a MAC narrowed by a voucher it is not on; a voucher not used here.
    assert_eq!(
        carry_out(&mut s, &ask(None, Some(&id), None, None), from, t).unwrap_err(),
        503
    );
    assert_eq!(
        carry_out(&mut s, &ask(None, None, Some(m2), Some((kid, 2))), from, t).unwrap_err(),
        503
    );
    assert_eq!(
        carry_out(&mut s, &ask(Some(60), None, None, Some((kid, 99))), from, t).unwrap_err(),
        503
    );
    // A session id of another device than the MAC named.
    let id3 = s.store.acct_sessions(Some(m3)).unwrap()[0]
        .session_id
        .clone();
    assert_eq!(
        carry_out(&mut s, &ask(None, Some(&id3), Some(m2), None), from, t).unwrap_err(),
        503
    );
    // A CoA by MAC shortens its voucher (for every device on it).
    carry_out(&mut s, &ask(Some(60), None, Some(m3), None), from, t).unwrap();
    assert!((55..=60).contains(&allowed(&mut s)[&m3]));
    assert_eq!(
        s.store.voucher(kid, 2).unwrap().unwrap().ends_at,
        Some(t + 60)
    );
    // ... or lengthens it, by voucher.
    carry_out(
        &mut s,
        &ask(Some(7200), None, None, Some((kid, 2))),
        from,
        t,
    )
    .unwrap();
    assert!(allowed(&mut s)[&m3] > 7100);
    // A revoke of a voucher never used here: NAK (no session), but refused when it comes.
    assert_eq!(
        carry_out(&mut s, &ask(None, None, None, Some((kid, 5))), from, t).unwrap_err(),
        503
    );
    assert!(s
        .redeem(&token(5, 1, t), Mac([2, 0, 0, 0, 0, 5]), t)
        .is_err());
    // A revoke of a voucher in use: every device loses it.
    carry_out(&mut s, &ask(None, None, None, Some((kid, 1))), from, t).unwrap();
    assert!(!allowed(&mut s).contains_key(&m2));
}
