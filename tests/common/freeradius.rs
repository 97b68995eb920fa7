//! A real FreeRADIUS (Debian's `freeradius`) for the RADIUS tests, started on a loopback port
//! or in a lab namespace with the smallest config that works: the router(s) as clients with
//! one secret, an accounting listener writing the `detail` module's file, and with
//! [`Radius::central`] an authentication listener running wifipos's own example policy
//! (`docs/freeradius/wifipos.authorize` with `schema.sql` in SQLite and
//! `dictionary.wifipos`): the very files an operator installs. Under CI=true a missing
//! freeradius fails the test.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "testing123";

pub fn have_freeradius() -> bool {
    let ok = Command::new("freeradius")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("freeradius (Debian packages freeradius and freeradius-utils, installed by scripts/setup) is required under CI=true");
        }
        eprintln!("SKIPPED: freeradius is missing (apt-get install freeradius freeradius-utils)");
    }
    ok
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A FreeRADIUS server on `listen` (in a lab namespace, or here), writing accounting to
/// `dir/detail`.
pub struct Radius {
    pub dir: PathBuf,
    pub listen: IpAddr,
    /// The accounting port.
    pub port: u16,
    /// The authentication port ([`Radius::central`] only).
    pub auth_port: Option<u16>,
    /// `ip netns exec NS` first.
    pub netns: Option<String>,
    /// `-X` (debug, single-threaded; the log is read by tests) or `-f` (as in production).
    pub debug: bool,
    child: Option<Child>,
    /// Starts so far (each writes its own log, radiusd-N.log).
    starts: usize,
}

fn docs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/freeradius")
        .join(name)
}

impl Radius {
    pub fn new(dir: &Path) -> Radius {
        let lo = IpAddr::from([127, 0, 0, 1]);
        Radius::at(dir, lo, free_udp_port(), lo, None)
    }

    /// An accounting server on `listen:port` for the client (the router) at `client`.
    pub fn at(
        dir: &Path,
        listen: IpAddr,
        port: u16,
        client: IpAddr,
        netns: Option<String>,
    ) -> Radius {
        Radius::write(dir, listen, port, None, &[client], netns)
    }

    /// Accounting on `port` (the detail file and wifipos's accounting table) and central
    /// authorization on `auth_port` (wifipos's example policy), both over `dir/hq.db`, for
    /// the routers at `clients`.
    pub fn central(
        dir: &Path,
        listen: IpAddr,
        port: u16,
        auth_port: u16,
        clients: &[IpAddr],
        netns: Option<String>,
    ) -> Radius {
        let db = rusqlite::Connection::open(dir.join("hq.db")).unwrap();
        db.execute_batch(&std::fs::read_to_string(docs("schema.sql")).unwrap())
            .unwrap();
        std::fs::copy(docs("dictionary.wifipos"), dir.join("dictionary")).unwrap();
        Radius::write(dir, listen, port, Some(auth_port), clients, netns)
    }

    fn write(
        dir: &Path,
        listen: IpAddr,
        port: u16,
        auth_port: Option<u16>,
        clients: &[IpAddr],
        netns: Option<String>,
    ) -> Radius {
        let d = dir.display();
        let clients: String = clients
            .iter()
            .enumerate()
            .map(|(i, c)| format!("client router{i} {{\n ipaddr = {c}\n secret = {SECRET}\n}}\n"))
            .collect();
        // Dictionaries come from the package (and `dir/dictionary` when there is one).
        let acct_policy = match auth_port {
            None => String::new(),
            Some(_) => format!("$INCLUDE {}\n", docs("wifipos.accounting").display()),
        };
        let (auth_modules, auth_server) = match auth_port {
            None => (String::new(), String::new()),
            Some(p) => (
                format!(
                    " sql {{\n  driver = \"rlm_sql_sqlite\"\n  dialect = \"sqlite\"\n  sqlite {{\n   filename = \"{d}/hq.db\"\n  }}\n  pool {{\n   start = 1\n   min = 1\n   max = 2\n   spare = 1\n   uses = 0\n   lifetime = 0\n   idle_timeout = 0\n  }}\n }}\n always ok {{\n  rcode = ok\n }}\n always reject {{\n  rcode = reject\n }}\n"
                ),
                format!(
                    " listen {{\n  type = auth\n  ipaddr = {listen}\n  port = {p}\n }}\n authorize {{\n$INCLUDE {}\n }}\n authenticate {{\n }}\n post-auth {{\n  Post-Auth-Type REJECT {{\n   ok\n  }}\n }}\n",
                    docs("wifipos.authorize").display()
                ),
            ),
        };
        let conf = format!(
            "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\n\
             sbindir = /usr/sbin\nlogdir = {d}\nraddbdir = {d}\nradacctdir = {d}\n\
             name = freeradius\nconfdir = {d}\nrun_dir = {d}\ndb_dir = {d}\n\
             libdir = /usr/lib/freeradius\npidfile = {d}/radiusd.pid\n\
             max_request_time = 30\ncleanup_delay = 5\nmax_requests = 1024\n\
             hostname_lookups = no\nlog {{\n destination = stdout\n}}\n\
             security {{\n allow_core_dumps = no\n max_attributes = 200\n reject_delay = 0\n status_server = no\n}}\n\
             {clients}\
             modules {{\n detail {{\n  filename = {d}/detail\n  header = \"%t\"\n  permissions = 0600\n  locking = no\n  log_packet_header = yes\n }}\n{auth_modules}}}\n\
             server default {{\n listen {{\n  type = acct\n  ipaddr = {listen}\n  port = {port}\n }}\n preacct {{\n }}\n accounting {{\n  detail\n{acct_policy} }}\n{auth_server}}}\n"
        );
        std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
        Radius {
            dir: dir.to_owned(),
            listen,
            port,
            auth_port,
            netns,
            debug: true,
            child: None,
            starts: 0,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen, self.port)
    }

    pub fn auth_addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen, self.auth_port.expect("a central server"))
    }

    /// The SQLite file of the central policy.
    pub fn hq_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("hq.db")).unwrap()
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let path = self.dir.join(format!("radiusd-{}.log", self.starts));
        let log = std::fs::File::create(&path).unwrap();
        let mut cmd = match &self.netns {
            // `ip netns exec` execs freeradius: killing the child kills the server.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "freeradius"]);
                c
            }
            None => Command::new("freeradius"),
        };
        let child = cmd
            .args([if self.debug { "-X" } else { "-f" }, "-d"])
            .arg(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("freeradius starts");
        self.child = Some(child);
        // Ready when it says so.
        let t = Instant::now();
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.contains("Ready to process requests")
                || (!self.debug && std::net::UdpSocket::bind(self.addr()).is_err())
            {
                break;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("freeradius exited ({st}):\n{log}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "freeradius not ready:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log of the current run (`-X`: every request it received).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("radiusd-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// The records in the detail file: attribute → value (quotes removed).
    pub fn detail(&self) -> Vec<HashMap<String, String>> {
        let text = std::fs::read_to_string(self.dir.join("detail")).unwrap_or_default();
        text.split("\n\n")
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                r.lines()
                    .skip(1)
                    .filter_map(|l| l.trim().split_once(" = "))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for Radius {
    fn drop(&mut self) {
        self.stop();
    }
}
