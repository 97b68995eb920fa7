//! What an unpaid phone can reach, port by port, in the lab with `wifiposd serve` running: every
//! TCP port of the router and of the upstream over IPv4 and IPv6, and over a thousand UDP ports,
//! with a listener or an echo server on each probed port so that "unreachable" means the
//! firewall stopped it, not that nothing was there. Only DHCP, DNS and the portal of the router
//! answer (port 80 anywhere lands on the portal); after paying, everything the upstream serves
//! answers.
//!
//! The lab runs no DHCP or DNS server (`scripts/lab` starts none): this test stands in echo
//! servers on 53/udp, 53/tcp, 67/udp and 547/udp (and on every other probed port) in the router.
//!
//! Needs root (namespaces, nftables); skips loudly elsewhere and fails under `CI=true`.

#[path = "common/cafe.rs"]
mod cafe;
mod common;
#[path = "common/phones.rs"]
mod phones;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use cafe::Cafe;
use phones::Http;

const PORTAL_PORT: u16 = 2050;

/// How one TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tcp {
    Open,
    /// A reset (`ECONNREFUSED`).
    Refused,
    /// Nothing before the timeout.
    Silent,
    /// Another error (errno), such as an ICMP unreachable.
    Error(i32),
}

/// Runs `f` on a thread inside the network namespace `ns`.
fn in_ns<T: std::marker::Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + std::marker::Send + 'static,
) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        phones::enter_ns(&ns);
        f()
    })
    .join()
    .unwrap()
}

/// Connects to every port at once (up to `window` in flight, non-blocking, `poll`), from the
/// calling thread's namespace.
fn scan_tcp(ip: IpAddr, ports: &[u16], window: usize, timeout: Duration) -> BTreeMap<u16, Tcp> {
    let mut out = BTreeMap::new();
    let mut todo = ports.iter().copied();
    let mut flight: Vec<(Socket, u16, Instant)> = Vec::new();
    let classify = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Tcp::Refused,
        Some(n) => Tcp::Error(n),
        None => Tcp::Error(-1),
    };
    loop {
        while flight.len() < window {
            let Some(port) = todo.next() else { break };
            let addr = SocketAddr::new(ip, port);
            let s =
                Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
            s.set_nonblocking(true).unwrap();
            match s.connect(&addr.into()) {
                Ok(()) => {
                    out.insert(port, Tcp::Open);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    flight.push((s, port, Instant::now()))
                }
                Err(e) => {
                    out.insert(port, classify(e));
                }
            }
        }
        if flight.is_empty() {
            return out;
        }
        let mut fds: Vec<libc::pollfd> = flight
            .iter()
            .map(|(s, _, _)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        let now = Instant::now();
        for i in (0..flight.len()).rev() {
            if fds[i].revents != 0 {
                let (s, port, _) = flight.swap_remove(i);
                let r = match s.take_error() {
                    Ok(None) if s.peer_addr().is_ok() => Tcp::Open,
                    Ok(None) => Tcp::Error(-1),
                    Ok(Some(e)) | Err(e) => classify(e),
                };
                out.insert(port, r);
            } else if now - flight[i].2 > timeout {
                let (_, port, _) = flight.swap_remove(i);
                out.insert(port, Tcp::Silent);
            }
        }
    }
}

/// Sends one datagram to each port and waits for echoes; `true` where one came back.
fn probe_udp(ip: IpAddr, ports: &[u16], wait: Duration) -> BTreeMap<u16, bool> {
    let any: SocketAddr = if ip.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let mut pending: Vec<(UdpSocket, u16)> = ports
        .iter()
        .map(|&p| {
            let s = UdpSocket::bind(any).unwrap();
            s.connect(SocketAddr::new(ip, p)).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.send(format!("probe {p}").as_bytes());
            (s, p)
        })
        .collect();
    let mut out: BTreeMap<u16, bool> = ports.iter().map(|&p| (p, false)).collect();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while !pending.is_empty() && start.elapsed() < wait {
        pending.retain(|(s, p)| match s.recv(&mut buf) {
            Ok(n) => {
                out.insert(*p, &buf[..n] == format!("probe {p}").as_bytes());
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false, // an ICMP error: refused
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

/// TCP listeners (never accepting) and UDP echo servers on the given ports of one namespace,
/// dual-stack; the echo thread stops on drop.
struct Services {
    tcp: Vec<(u16, TcpListener)>,
    stop: Arc<AtomicBool>,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl Services {
    fn start(ns: &str, tcp: Vec<u16>, udp: Vec<u16>) -> Services {
        let (tcp, udp) = in_ns(ns, move || {
            let tcp: Vec<(u16, TcpListener)> = tcp
                .into_iter()
                .map(|p| {
                    let l = TcpListener::bind(("::", p))
                        .unwrap_or_else(|e| panic!("listen on {p}/tcp: {e}"));
                    l.set_nonblocking(true).unwrap();
                    (p, l)
                })
                .collect();
            let udp: Vec<UdpSocket> = udp
                .into_iter()
                .map(|p| UdpSocket::bind(("::", p)).unwrap_or_else(|e| panic!("bind {p}/udp: {e}")))
                .collect();
            (tcp, udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let echo = std::thread::spawn(move || {
            let mut fds: Vec<libc::pollfd> = udp
                .iter()
                .map(|s| libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
                if n <= 0 {
                    continue;
                }
                for (i, fd) in fds.iter_mut().enumerate() {
                    if fd.revents & libc::POLLIN != 0 {
                        if let Ok((n, from)) = udp[i].recv_from(&mut buf) {
                            let _ = udp[i].send_to(&buf[..n], from);
                        }
                    }
                    fd.revents = 0;
                }
            }
        });
        Services {
            tcp,
            stop,
            echo: Some(echo),
        }
    }

    /// Connections that reached the listener on `port` (they are taken and dropped).
    fn accepted(&self, port: u16) -> usize {
        let l = &self.tcp.iter().find(|(p, _)| *p == port).unwrap().1;
        std::iter::from_fn(|| l.accept().ok()).count()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.echo.take() {
            let _ = h.join();
        }
    }
}

/// Ports listening in a namespace according to `ss -lntuH`: (tcp, udp).
fn listening(cafe: &Cafe, host: &str) -> (BTreeSet<u16>, BTreeSet<u16>) {
    let out = cafe.lab.run(host, "ss", &["-lntuH"]);
    assert!(out.status.success());
    let (mut tcp, mut udp) = (BTreeSet::new(), BTreeSet::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port: u16 = cols[4].rsplit(':').next().unwrap().parse().unwrap();
        match cols[0] {
            "tcp" => tcp.insert(port),
            "udp" => udp.insert(port),
            other => panic!("ss: {other}"),
        };
    }
    (tcp, udp)
}

fn open_ports(scan: &BTreeMap<u16, Tcp>) -> BTreeSet<u16> {
    scan.iter()
        .filter(|(_, r)| **r == Tcp::Open)
        .map(|(p, _)| *p)
        .collect()
}

fn answered(probe: &BTreeMap<u16, bool>) -> BTreeSet<u16> {
    probe.iter().filter(|(_, r)| **r).map(|(p, _)| *p).collect()
}

fn tally(scan: &BTreeMap<u16, Tcp>) -> BTreeMap<Tcp, usize> {
    let mut t = BTreeMap::new();
    for r in scan.values() {
        *t.entry(*r).or_default() += 1;
    }
    t
}

/// Ports the test serves: all of 1–1024 and a spread of well-known higher ones.
fn served_ports() -> Vec<u16> {
    let mut p: Vec<u16> = (1..=1024).collect();
    p.extend([
        1194, 1883, 1900, 2049, 2051, 3000, 3128, 3306, 3389, 4500, 5000, 5060, 5353, 5355, 5432,
        6379, 8000, 8081, 8443, 8888, 9000, 9100, 10000, 11211, 20000, 27017, 32768, 40000, 49152,
        51820, 60000, 65535,
    ]);
    p
}

#[test]
fn an_unpaid_phone_reaches_only_dhcp_dns_and_the_portal_then_the_internet_once_paid() {
    let Some(cafe) = Cafe::open("is") else { return };
    let started = Instant::now();
    cafe.write_config("\toption attempts_per_minute '1000'\n");
    let daemon = cafe.start();
    let client = phones::ns_of(&cafe.lab, "client");

    // Something on every probed port of the router and of the upstream (upstream.py already
    // serves 80 and 8080 there).
    let served = served_ports();
    let router_svc = Services::start(
        &phones::ns_of(&cafe.lab, "router"),
        served.clone(),
        served.clone(),
    );
    let up_tcp: Vec<u16> = served.iter().copied().filter(|p| *p != 80).collect();
    let _up_svc = Services::start(
        &phones::ns_of(&cafe.lab, "upstream"),
        up_tcp,
        served.clone(),
    );
    let (router_tcp, router_udp) = listening(&cafe, "router");
    let (up_tcp, up_udp) = listening(&cafe, "upstream");
    assert!(router_tcp.contains(&PORTAL_PORT) && router_tcp.len() > served.len());
    assert!(up_tcp.contains(&80) && up_tcp.contains(&8080));

    // What the ruleset lets a guest reach on the router: DHCP (67, 547 for IPv6), DNS and the
    // portal; port 80 is redirected to the portal.
    let router_open_tcp: BTreeSet<u16> = router_tcp
        .iter()
        .copied()
        .filter(|p| [53, PORTAL_PORT].contains(p))
        .chain([80])
        .collect();
    let router_open_udp: BTreeSet<u16> = router_udp
        .iter()
        .copied()
        .filter(|p| [53, 67, 547].contains(p))
        .collect();
    assert_eq!(router_open_udp, BTreeSet::from([53, 67, 547]));
    let all: Vec<u16> = (1..=65535).collect();
    let udp_ports: Vec<u16> = router_udp.iter().copied().collect();
    let up_udp_ports: Vec<u16> = up_udp.iter().copied().collect();
    let window = 4000;
    let timeout = Duration::from_secs(3);

    let targets: [(&str, IpAddr, IpAddr); 2] = [
        (
            "IPv4",
            "10.20.0.1".parse().unwrap(),
            "10.99.0.2".parse().unwrap(),
        ),
        (
            "IPv6",
            "fd20::1".parse().unwrap(),
            "fd99::2".parse().unwrap(),
        ),
    ];
    let mut scanned = 0;
    for (family, router, upstream) in targets {
        let t = Instant::now();
        let (all2, udp2, upudp2) = (all.clone(), udp_ports.clone(), up_udp_ports.clone());
        let (r_tcp, u_tcp, r_udp, u_udp) = in_ns(&client, move || {
            (
                scan_tcp(router, &all2, window, timeout),
                scan_tcp(upstream, &all2, window, timeout),
                probe_udp(router, &udp2, Duration::from_secs(1)),
                probe_udp(upstream, &upudp2, Duration::from_secs(1)),
            )
        });
        scanned += r_tcp.len() + u_tcp.len() + r_udp.len() + u_udp.len();
        eprintln!(
            "{family} unpaid, {:.1} s: router tcp {:?} open {:?}; upstream tcp {:?} open {:?}; \
             router udp answered {:?} of {}; upstream udp answered {:?} of {}",
            t.elapsed().as_secs_f64(),
            tally(&r_tcp),
            open_ports(&r_tcp),
            tally(&u_tcp),
            open_ports(&u_tcp),
            answered(&r_udp),
            r_udp.len(),
            answered(&u_udp),
            u_udp.len()
        );
        assert_eq!(r_tcp.len(), 65535);
        assert_eq!(open_ports(&r_tcp), router_open_tcp, "{family} router TCP");
        assert_eq!(answered(&r_udp), router_open_udp, "{family} router UDP");
        assert_eq!(
            open_ports(&u_tcp),
            BTreeSet::from([80]),
            "{family} upstream TCP: only 80, redirected"
        );
        assert!(answered(&u_udp).is_empty(), "{family} upstream UDP");
        // Refused at once with a reset, not left to time out (phones notice the portal fast).
        for scan in [&r_tcp, &u_tcp] {
            assert!(
                scan.values().all(|r| matches!(r, Tcp::Open | Tcp::Refused)),
                "{family}: {:?}",
                tally(scan)
            );
        }
    }
    // The router's other addresses (its uplink) are the router too: same answer.
    let router_listening: Vec<u16> = router_tcp.iter().copied().collect();
    let ports = router_listening.clone();
    let wan = in_ns(&client, move || {
        [
            scan_tcp("10.99.0.1".parse().unwrap(), &ports, window, timeout),
            scan_tcp("fd99::1".parse().unwrap(), &ports, window, timeout),
        ]
    });
    for scan in &wan {
        scanned += scan.len();
        assert_eq!(
            open_ports(scan),
            router_open_tcp,
            "the router's uplink addresses"
        );
    }

    // Port 80 anywhere is the portal, which redirects to itself; the router's own listener on
    // 80 never saw a connection.
    let http = |addr: &'static str, path: &'static str| {
        in_ns(&client, move || Http::new(addr).get(path).unwrap())
    };
    for addr in [
        "10.99.0.2:80",
        "[fd99::2]:80",
        "10.20.0.1:80",
        "[fd20::1]:80",
    ] {
        let r = http(addr, "/generate_204");
        assert_eq!(r.status, 302, "{addr}: {r:?}");
        assert!(
            r.head.contains("http://10.20.0.1:2050/"),
            "{addr}: {}",
            r.head
        );
    }
    assert_eq!(router_svc.accepted(80), 0, "port 80 went to the portal");
    let api = http("10.20.0.1:2050", "/api/captive");
    assert!(api.body.contains("\"captive\":true"), "{api:?}");

    // Pay.
    let v = cafe.issue(&["--duration", "1h"]);
    let token = v["token"].as_str().unwrap().to_owned();
    let paid = in_ns(&client, move || {
        Http::new("10.20.0.1:2050")
            .get(&format!("/v/{token}"))
            .unwrap()
    });
    assert!(paid.online(), "{paid:?}\n{}", cafe.log());

    // Now everything the upstream serves answers, over IPv4 and IPv6, and port 80 is its own.
    for (family, router, upstream) in targets {
        let t = Instant::now();
        let (all2, upudp2, ports) = (all.clone(), up_udp_ports.clone(), router_listening.clone());
        let (u_tcp, u_udp, r_tcp) = in_ns(&client, move || {
            (
                scan_tcp(upstream, &all2, window, timeout),
                probe_udp(upstream, &upudp2, Duration::from_secs(1)),
                scan_tcp(router, &ports, window, timeout),
            )
        });
        scanned += u_tcp.len() + u_udp.len() + r_tcp.len();
        eprintln!(
            "{family} paid, {:.1} s: upstream tcp {:?}, udp answered {} of {}; router tcp {:?} open {:?}",
            t.elapsed().as_secs_f64(),
            tally(&u_tcp),
            answered(&u_udp).len(),
            u_udp.len(),
            tally(&r_tcp),
            open_ports(&r_tcp)
        );
        assert_eq!(
            open_ports(&u_tcp),
            up_tcp,
            "{family} upstream TCP once paid"
        );
        assert_eq!(answered(&u_udp), up_udp, "{family} upstream UDP once paid");
        // Paying opens the internet, not the router: its other services stay closed, and
        // port 80 is no longer redirected (so it is the router's closed port 80).
        assert_eq!(
            open_ports(&r_tcp),
            BTreeSet::from([53, PORTAL_PORT]),
            "{family} router TCP once paid"
        );
    }
    let r = http("10.99.0.2:80", "/generate_204");
    assert_eq!(r.status, 204, "{r:?}");
    let r = http("[fd99::2]:80", "/generate_204");
    assert_eq!(r.status, 204, "{r:?}");
    // Another phone is still captive.
    assert_eq!(cafe.lab.internet("client2", false), 0);
    assert_eq!(cafe.lab.internet("client2", true), 0);

    eprintln!(
        "{scanned} ports probed; total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(daemon);
}
