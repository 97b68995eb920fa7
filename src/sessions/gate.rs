//! The portal's [`Gate`] over the sessions: verify a voucher, decide and record it in the store,
//! open the firewall (rebuilding the table if it was removed, or taking the redemption back
//! when even that fails), and answer what access a device has.
//!
//! Owns: the `Gate` calls (`redeem`, `genuine`, `access`, and with central authorization on,
//! `ask_central` and `redeem_with`: which redemptions a RADIUS server is asked about, and what
//! its word changes). Not: the HTTP side (`portal`), the table rebuild itself
//! (`Sessions::restore`), nor the Access-Request on the wire (`radius::auth`).
//!
//! Imports: the portal's `Gate` trait and its answer types, `voucher`, `radius::auth` (a
//! future that borrows nothing), and the sessions above.
//! The portal never imports this module (nor `sessions`): it is generic over any `Gate`.

use std::time::Duration;

use super::Sessions;
use crate::mac::Mac;
use crate::policy::FirewallAction;
use crate::portal::{Access, Central, CentralAsk, Gate, RedeemError};
use crate::radius::packet::{AccessQuery, Verdict};
use crate::voucher::{self, Rejection};

/// Voucher v2's known limits (data cap, speed limits) are enforced here; entries of unknown
/// enforceable types were already refused by `voucher::verify` as "unsupported limit".
impl Gate for Sessions {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError> {
        self.redeem_checked(input, mac, now, None)
    }

    /// Asked: a genuine voucher the router itself would grant to a device new on it (or
    /// refuse as full while an idle device may give its place), with
    /// `option radius_auth_server` set. Not asked: everything the router refuses on its own
    /// (the server's yes would not change that) and a device already on the voucher.
    fn ask_central(&mut self, input: &str, mac: Mac, now: i64) -> Option<CentralAsk> {
        let (server, secret) = self.cfg.radius_auth()?;
        let v = voucher::verify(input, &self.keyring).ok()?;
        match self.store.would_redeem(&v, mac, Sessions::clock(now)) {
            Ok(Ok(g)) if g.new_device => {}
            Ok(Err(Rejection::DeviceLimit { .. })) if self.cfg.device_idle_replace_min > 0 => {}
            _ => return None,
        }
        let q = AccessQuery {
            user_name: format!("{}:{}", v.key_id, v.serial),
            mac,
            nas_id: self.cfg.nas_id().to_owned(),
            voucher: voucher::token_from_input(input).to_owned(),
            max_devices: v.max_devices,
            duration_s: v.duration_s,
        };
        let secret = secret.to_vec();
        let timeout = Duration::from_millis(u64::from(self.cfg.radius_timeout_ms));
        Some(Box::pin(async move {
            match crate::radius::auth::authorize(server, &secret, &q, timeout).await {
                Ok(Verdict::Accept { session_timeout }) => Central::Accept { session_timeout },
                Ok(Verdict::Reject { message }) => Central::Reject { message },
                Err(e) => Central::Unanswered(e.to_string()),
            }
        }))
    }

    fn redeem_with(
        &mut self,
        input: &str,
        mac: Mac,
        now: i64,
        central: Central,
    ) -> Result<Access, RedeemError> {
        self.redeem_checked(input, mac, now, Some(central))
    }

    fn genuine(&mut self, input: &str) -> Option<(crate::keys::KeyId, u64)> {
        voucher::verify(input, &self.keyring)
            .ok()
            .map(|v| (v.key_id, v.serial))
    }

    fn access(&mut self, mac: Mac, now: i64) -> Option<Access> {
        match self.store.access(mac, now) {
            Ok(a) => a.map(|a| Access {
                seconds_left: (a.until - now).max(0) as u64,
                devices: a.devices,
                max_devices: a.max_devices,
                bytes_left: self.bytes_remaining(mac, now),
            }),
            Err(e) => {
                eprintln!("wifiposd: cannot read sessions: {e}");
                None
            }
        }
    }
}

impl Sessions {
    /// A redemption, with the central server's word if it was asked: its Access-Reject
    /// refuses (recorded like any refusal), its Session-Timeout shortens the voucher (never
    /// lengthens it), and no answer leaves the decision to the router.
    fn redeem_checked(
        &mut self,
        input: &str,
        mac: Mac,
        now: i64,
        central: Option<Central>,
    ) -> Result<Access, RedeemError> {
        let v = match voucher::verify(input, &self.keyring) {
            Ok(v) => v,
            Err(why) => {
                if let Err(e) = self.store.record_refusal(Some(mac), &why, now) {
                    eprintln!("wifiposd: cannot record a refusal: {e}");
                }
                return Err(RedeemError::Refused(why));
            }
        };
        let mut central_end = None;
        match central {
            Some(Central::Reject { message }) => {
                let why = Rejection::CentralRefused { message };
                if let Err(e) = self.store.record_refusal(Some(mac), &why, now) {
                    eprintln!("wifiposd: cannot record a refusal: {e}");
                }
                return Err(RedeemError::Refused(why));
            }
            Some(Central::Accept { session_timeout }) => {
                central_end = session_timeout.map(|t| now + i64::from(t));
            }
            Some(Central::Unanswered(why)) => {
                eprintln!("wifiposd: {why}; the router decides {mac}'s redemption alone");
                let detail = format!("{why}; the router decided alone");
                if let Err(e) = self.store.record_unanswered(mac, &detail, now) {
                    eprintln!("wifiposd: cannot record an event: {e}");
                }
            }
            None => {}
        }
        let mut r = match self.store.redeem(&v, mac, Sessions::clock(now)) {
            Err(e) => return Err(RedeemError::Internal(e.to_string())),
            Ok(Err(voucher::Rejection::DeviceLimit { .. })) if self.replace_idle(&v, mac, now) => {
                match self.store.redeem(&v, mac, Sessions::clock(now)) {
                    Err(e) => return Err(RedeemError::Internal(e.to_string())),
                    Ok(Err(why)) => return Err(RedeemError::Refused(why)),
                    Ok(Ok(r)) => r,
                }
            }
            Ok(Err(why)) => return Err(RedeemError::Refused(why)),
            Ok(Ok(r)) => r,
        };
        if let Some(end) = central_end.filter(|e| *e < r.grant.ends_at) {
            self.central_end(&v, mac, end, now, &mut r);
        }
        let left = Duration::from_secs((r.device_until - now).max(1) as u64);
        self.ends.set(mac, r.device_until);
        if let Err(e) = self.firewall.allow(&[(mac, left)]) {
            // The table was likely removed from outside: rebuild it from the store, which
            // already holds this device. If even that fails, take the redemption back so the
            // "not saved" page the customer gets is true and the slot stays free.
            eprintln!("wifiposd: cannot add {mac} to the firewall ({e}); rebuilding the table");
            if let Err(e) = self.restore(now) {
                if r.grant.new_device {
                    if let Err(u) =
                        self.store
                            .undo_redemption(v.key_id, v.serial, mac, r.grant.first_use, now)
                    {
                        eprintln!("wifiposd: cannot take back the redemption of {mac}: {u}");
                    }
                }
                return Err(RedeemError::Internal(e.to_string()));
            }
        }
        if r.grant.new_device {
            self.account_start(v.key_id, v.serial, mac, now);
        }
        self.update_speed_limits(&[mac], now);
        if v.limits().data_cap_mib.is_some() {
            // Its traffic counts from now: watch the counters closely at once.
            self.meter.wake.notify_one();
        }
        Ok(Access {
            seconds_left: (r.grant.ends_at - now).max(0) as u64,
            devices: r.grant.devices,
            max_devices: r.max_devices,
            bytes_left: self.bytes_remaining(mac, now),
        })
    }

    /// The central server's Session-Timeout ends the voucher at `end`, sooner than its own
    /// time: set it in the store (for every device on it: their time is the voucher's) and
    /// in `r`, the redemption just made.
    fn central_end(
        &mut self,
        v: &voucher::Voucher,
        mac: Mac,
        end: i64,
        now: i64,
        r: &mut crate::store::Redeemed,
    ) {
        let end = end.max(now + 1);
        let why = format!("Session-Timeout {} s from the RADIUS server", end - now);
        let actions = match self.store.set_end(v.key_id, v.serial, end, &why, now) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => return eprintln!("wifiposd: cannot shorten a voucher: {e}"),
        };
        r.grant.ends_at = end;
        if let Ok(Some(a)) = self.store.access(mac, now) {
            r.device_until = a.until;
        }
        // The device redeeming is added below; the others already on it get the new end.
        let others: Vec<_> = actions.into_iter().filter(|a| a.mac() != mac).collect();
        if let Err(e) = self.apply(&others, now) {
            eprintln!("wifiposd: cannot give the voucher's devices its new end: {e}");
        }
    }

    /// A full voucher: gives the place of a device idle for `device_idle_replace` minutes to
    /// `mac` and takes the idle one out of the firewall (it keeps what other vouchers give it).
    /// Returns whether a place was freed. Failures are logged and count as "no place".
    fn replace_idle(&mut self, v: &voucher::Voucher, mac: Mac, now: i64) -> bool {
        let idle_s = i64::from(self.cfg.device_idle_replace_min) * 60;
        if idle_s == 0 {
            return false;
        }
        // The idle test needs the latest traffic: what the store saved and what the counters
        // saw since (in memory; a guest's refused attempt never writes to flash).
        self.read_usage(now);
        let recent = self.meter.last_active();
        let old = match self.store.replace_idle(v, mac, idle_s, &recent, now) {
            Ok(Some(old)) => old,
            Ok(None) => return false,
            Err(e) => {
                eprintln!("wifiposd: cannot replace an idle device: {e}");
                return false;
            }
        };
        eprintln!("wifiposd: {old} was idle; its place on the voucher goes to {mac}");
        self.account_stop(&[old], crate::radius::TerminateCause::IdleTimeout, now);
        let action = match self.store.access(old, now) {
            Ok(Some(a)) => FirewallAction::Allow {
                mac: old,
                until: a.until,
            },
            _ => FirewallAction::Remove { mac: old },
        };
        if let Err(e) = self.apply(&[action], now) {
            eprintln!("wifiposd: cannot take {old} out of the firewall: {e}");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::firewall::{Firewall, FirewallError, Health, MemoryFirewall, Ruleset, TableHealth};
    use crate::keys::Keyring;
    use crate::sessions::{ruleset, CLOCK_SANE_AFTER};
    use crate::store::Store;
    use ed25519_dalek::SigningKey;

    /// A kernel that refuses everything (nf_tables gone).
    struct Broken;

    fn refused() -> FirewallError {
        FirewallError::Install("refused".into())
    }

    impl Firewall for Broken {
        fn install(&mut self, _: &Ruleset, _: &[(Mac, Duration)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn allow(&mut self, _: &[(Mac, Duration)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn remove(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError> {
            Err(refused())
        }
        fn set_trusted(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn set_blocked(&mut self, _: &[Mac]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn set_garden(&mut self, _: &[(std::net::IpAddr, u8)]) -> Result<(), FirewallError> {
            Err(refused())
        }
        fn check(&mut self) -> Result<TableHealth, FirewallError> {
            Err(refused())
        }
        fn usage(&mut self) -> Result<Vec<(Mac, crate::firewall::Usage)>, FirewallError> {
            Err(refused())
        }
    }

    fn sessions(dir: &std::path::Path, firewall: Box<dyn Firewall>, key: &SigningKey) -> Sessions {
        Sessions::new(
            Store::open(&dir.join("w.db")).unwrap(),
            firewall,
            Keyring::new([key.verifying_key()]),
            Config::default(),
        )
    }

    fn token(key: &SigningKey, max_devices: u8) -> String {
        voucher::Voucher {
            key_id: crate::keys::KeyId::of(&key.verifying_key()),
            serial: 7,
            issued_at: CLOCK_SANE_AFTER as u32,
            redeem_by: 0,
            duration_s: 3600,
            max_devices,
            purchase_ref: String::new(),
            ext: None,
        }
        .sign(key)
        .unwrap()
    }

    fn v2_token(key: &SigningKey, serial: u64, ext: voucher::Ext) -> String {
        voucher::Voucher {
            key_id: crate::keys::KeyId::of(&key.verifying_key()),
            serial,
            issued_at: CLOCK_SANE_AFTER as u32,
            redeem_by: 0,
            duration_s: 3600,
            max_devices: 1,
            purchase_ref: String::new(),
            ext: Some(ext),
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn known_limits_are_granted_and_kept_and_informational_entries_pass() {
        use voucher::{Ext, Limits};
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let now = CLOCK_SANE_AFTER + 100;
        let mut s = sessions(dir.path(), Box::new(MemoryFirewall::new()), &key);
        let limits = Limits {
            data_cap_mib: Some(500),
            down_kbit: Some(2000),
            up_kbit: Some(512),
        };
        let a = Mac([2, 0, 0, 0, 1, 1]);
        let got = s
            .redeem(&v2_token(&key, 100, Ext::with_limits(limits)), a, now)
            .unwrap();
        assert_eq!(got.bytes_left, Some(500 << 20));
        let kept = s
            .store
            .voucher(crate::keys::KeyId::of(&key.verifying_key()), 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            (kept.data_cap, kept.down_kbit, kept.up_kbit),
            (Some(500 << 20), Some(2000), Some(512))
        );
        assert_eq!(s.store.rates_of(a).unwrap(), (Some(2000), Some(512)));
        // Entries of enforceable types this router does not know are refused by
        // `voucher::verify` itself (tests in voucher::ext and the v2 vectors).
        // Only an informational entry (0x80 and up): accepted like v1, no data cap.
        let info = Ext {
            limits: Limits::default(),
            other: vec![voucher::ext::OtherEntry {
                kind: 0x80,
                value: b"abc".to_vec(),
            }],
        };
        let c = Mac([2, 0, 0, 0, 2, 1]);
        let got = s.redeem(&v2_token(&key, 200, info), c, now).unwrap();
        assert_eq!(got.seconds_left, 3600);
        assert_eq!(got.bytes_left, None);
        let allowed: Vec<Mac> = s
            .firewall
            .list_allowed()
            .unwrap()
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(allowed, vec![a, c]);
    }

    #[test]
    fn a_redemption_the_firewall_cannot_carry_out_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let now = CLOCK_SANE_AFTER + 100;
        let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let t = token(&key, 1);
        {
            let mut s = sessions(dir.path(), Box::new(Broken), &key);
            assert!(matches!(
                s.redeem(&t, a, now),
                Err(RedeemError::Internal(_))
            ));
            // Nothing was granted: the voucher is unused and the device holds no slot.
            assert_eq!(
                s.store
                    .voucher(crate::keys::KeyId::of(&key.verifying_key()), 7)
                    .unwrap(),
                None
            );
            assert_eq!(s.store.access(a, now).unwrap(), None);
        }
        // With a working firewall the single slot is still there for another device.
        let mut s = sessions(dir.path(), Box::new(MemoryFirewall::new()), &key);
        let got = s.redeem(&t, b, now + 10).unwrap();
        assert_eq!(got.seconds_left, 3600);
        assert_eq!(s.firewall.list_allowed().unwrap().len(), 1);
    }

    #[test]
    fn a_table_removed_under_a_redemption_is_rebuilt_with_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let now = CLOCK_SANE_AFTER + 100;
        let mut fw = MemoryFirewall::new();
        fw.install(&ruleset(&Config::default(), &[]), &[]).unwrap();
        fw.flush();
        let mut s = sessions(dir.path(), Box::new(fw), &key);
        let a = Mac([2, 0, 0, 0, 0, 1]);
        s.redeem(&token(&key, 1), a, now).unwrap();
        assert_eq!(s.firewall.health().unwrap(), Health::Intact);
        assert_eq!(s.firewall.list_allowed().unwrap()[0].0, a);
    }
}
