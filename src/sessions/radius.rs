//! RADIUS accounting of the sessions: queues Start when a device joins a voucher, Stop when
//! its access on that voucher ends (with the cause), and Interim-Update every
//! `option radius_interim` seconds, each through the store's outbox (`radius::sender` delivers
//! them). Off (nothing written) unless `option radius_server` is set. Octets are the device's
//! saved counters (`devices.up_bytes/down_bytes`, saved first so they are current); input is
//! from the device (upload). Framed-IP-Address is the device's IPv4 address in the kernel's
//! neighbour table on the guest interface, when it has one.
//! Not: packets on the wire (`radius`), the outbox SQL (`store::outbox`), timers (`daemon`).

use super::Sessions;
use crate::keys::KeyId;
use crate::mac::Mac;
use crate::radius::{Record, StatusType, TerminateCause};
use crate::store::{AcctChange, AcctSession};

/// A device session's Acct-Session-Id: its MAC in hex and when it joined the voucher, with
/// the serial (one MAC may join two vouchers in the same second).
pub fn session_id(mac: Mac, first_seen: i64, serial: u64) -> String {
    let b = mac.0;
    format!(
        "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}-{first_seen}-{serial}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// Why an open session is no longer live, as far as the store tells.
fn inferred_cause(a: &AcctSession) -> TerminateCause {
    if a.revoked || !a.on_voucher {
        TerminateCause::AdminReset
    } else {
        // Time or data used up.
        TerminateCause::SessionTimeout
    }
}

impl Sessions {
    fn accounting_on(&self) -> bool {
        self.cfg.radius().is_some()
    }

    fn record(&self, a: &AcctSession, status: StatusType, now: i64) -> Record {
        Record {
            status,
            session_id: a.session_id.clone(),
            user_name: format!("{}:{}", a.key_id, a.serial),
            mac: a.mac,
            nas_id: self.cfg.nas_id().to_owned(),
            framed_ip: None,
            session_time: (now - a.started_at).clamp(0, u32::MAX as i64) as u32,
            input_octets: a.up_bytes,
            output_octets: a.down_bytes,
            event_time: now.clamp(0, u32::MAX as i64) as u32,
            cause: None,
        }
    }

    fn write_accounting(&mut self, records: Vec<(AcctChange, StatusType, Record)>, now: i64) {
        if records.is_empty() {
            return;
        }
        let ips = self.guest_ipv4();
        let rows: Vec<(AcctChange, i64, Vec<u8>)> = records
            .into_iter()
            .map(|(c, s, mut r)| {
                r.framed_ip = ips.get(&r.mac).copied();
                (c, s as i64, r.attributes())
            })
            .collect();
        match self.store.acct_write(&rows, now) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "wifiposd: RADIUS outbox full: the {n} oldest Interim-Updates dropped (is the server reachable?)"
            ),
            Err(e) => eprintln!("wifiposd: cannot queue RADIUS accounting: {e}"),
        }
        self.radius_wake.notify_one();
    }

    /// Each device's IPv4 address on the guest network, from the kernel's neighbour table (one
    /// dump), for Framed-IP-Address; empty when it cannot be read.
    fn guest_ipv4(&self) -> std::collections::HashMap<Mac, std::net::Ipv4Addr> {
        let Some(ifindex) = crate::fdb::ifindex(&self.cfg.guest_iface) else {
            return Default::default();
        };
        crate::neigh::entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.ifindex == ifindex)
            .filter_map(|e| match e.ip {
                std::net::IpAddr::V4(a) => Some((e.mac, a)),
                std::net::IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// Brings the saved counters up to date, so the octets reported are current.
    fn save_counters(&mut self, now: i64) {
        self.read_usage(now);
        if let Err(e) = self.save_usage(now) {
            eprintln!("wifiposd: cannot save the traffic counters: {e}");
        }
    }

    /// The Start of `mac`'s session on `key:serial`, begun at `started_at`.
    fn start_record(
        &self,
        key: String,
        serial: u64,
        mac: Mac,
        first_seen: i64,
        started_at: i64,
    ) -> (AcctChange, StatusType, Record) {
        let a = AcctSession {
            key_id: key,
            serial,
            mac,
            session_id: session_id(mac, first_seen, serial),
            started_at,
            interim_at: started_at,
            up_bytes: 0,
            down_bytes: 0,
            on_voucher: true,
            revoked: false,
            ends_at: None,
            data_used_up: false,
        };
        let rec = self.record(&a, StatusType::Start, started_at);
        let change = AcctChange::Start {
            key_id: a.key_id,
            serial,
            mac,
            session_id: a.session_id,
            started_at,
        };
        (change, StatusType::Start, rec)
    }

    /// A device joined voucher `key_id:serial`: queue its Start.
    pub fn account_start(&mut self, key_id: KeyId, serial: u64, mac: Mac, now: i64) {
        if !self.accounting_on() {
            return;
        }
        let key = key_id.to_string();
        let first_seen = match self.store.device_first_seen(&key, serial, mac) {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => return eprintln!("wifiposd: cannot read a device for accounting: {e}"),
        };
        let start = self.start_record(key, serial, mac, first_seen, now);
        self.write_accounting(vec![start], now);
    }

    /// Queues a Start (dated when the device joined) for every device with access and no
    /// accounting session: at start-up (the daemon may have stopped between a redemption and
    /// its Start) and when a reload turns accounting on. Returns how many.
    pub fn account_missing_starts(&mut self, now: i64) -> usize {
        if !self.accounting_on() {
            return 0;
        }
        let missing = match self.store.acct_missing(now) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("wifiposd: cannot read sessions for accounting: {e}");
                return 0;
            }
        };
        let starts: Vec<_> = missing
            .into_iter()
            .map(|(key, serial, mac, first_seen)| {
                self.start_record(key, serial, mac, first_seen, first_seen)
            })
            .collect();
        let n = starts.len();
        self.write_accounting(starts, now);
        n
    }

    /// Access of `macs` ended (`cause`): queue a Stop for each of their open sessions that is
    /// no longer live (a device keeps the sessions of its other live vouchers).
    pub fn account_stop(&mut self, macs: &[Mac], cause: TerminateCause, now: i64) {
        if !self.accounting_on() || macs.is_empty() {
            return;
        }
        let ended = |s: &Sessions| -> Vec<AcctSession> {
            let mut out = Vec::new();
            for mac in macs {
                match s.store.acct_sessions(Some(*mac)) {
                    Ok(open) => out.extend(open.into_iter().filter(|a| !a.live(now))),
                    Err(e) => eprintln!("wifiposd: cannot read RADIUS sessions: {e}"),
                }
            }
            out
        };
        // Most changes (an extension, a device with another voucher) end no session: save
        // the counters (a write to flash) only when a Stop is to report them.
        if ended(self).is_empty() {
            return;
        }
        self.save_counters(now);
        let stops = ended(self)
            .into_iter()
            .map(|a| self.stop(a, cause, now))
            .collect();
        self.write_accounting(stops, now);
    }

    fn stop(
        &self,
        a: AcctSession,
        cause: TerminateCause,
        now: i64,
    ) -> (AcctChange, StatusType, Record) {
        let mut rec = self.record(&a, StatusType::Stop, now);
        rec.cause = Some(cause);
        let change = AcctChange::Stop {
            key_id: a.key_id,
            serial: a.serial,
            mac: a.mac,
        };
        (change, StatusType::Stop, rec)
    }

    /// Queues an Interim-Update for each open session whose last one is `radius_interim`
    /// seconds old, and a Stop for each that ended without one (the daemon was down, or an
    /// end nobody reported). Returns how many records were queued.
    pub fn account_interims(&mut self, now: i64) -> usize {
        if !self.accounting_on() {
            return 0;
        }
        let every = i64::from(self.cfg.radius_interim_s);
        let open = match self.store.acct_sessions(None) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("wifiposd: cannot read RADIUS sessions: {e}");
                return 0;
            }
        };
        if !open
            .iter()
            .any(|a| !a.live(now) || now - a.interim_at >= every)
        {
            return 0;
        }
        self.save_counters(now);
        let open = self.store.acct_sessions(None).unwrap_or_default();
        let mut out = Vec::new();
        for a in open {
            if !a.live(now) {
                let cause = inferred_cause(&a);
                out.push(self.stop(a, cause, now));
            } else if now - a.interim_at >= every {
                let rec = self.record(&a, StatusType::InterimUpdate, now);
                let change = AcctChange::Interim {
                    key_id: a.key_id,
                    serial: a.serial,
                    mac: a.mac,
                    up_bytes: a.up_bytes,
                    down_bytes: a.down_bytes,
                };
                out.push((change, StatusType::InterimUpdate, rec));
            }
        }
        let n = out.len();
        self.write_accounting(out, now);
        n
    }
}
