//! The portal's [`Gate`] over the sessions: verify a voucher, decide and record it in the store,
//! open the firewall (rebuilding the table if it was removed, or taking the redemption back
//! when even that fails), and answer what access a device has.
//!
//! Owns: the three `Gate` calls (`redeem`, `genuine`, `access`). Not: the HTTP side (`portal`)
//! nor the table rebuild itself (`Sessions::restore`).
//!
//! Imports: the portal's `Gate` trait and its answer types, `voucher`, and the sessions above.
//! The portal never imports this module (nor `sessions`): it is generic over any `Gate`.

use std::time::Duration;

use super::Sessions;
use crate::mac::Mac;
use crate::policy::FirewallAction;
use crate::portal::{Access, Gate, RedeemError};
use crate::voucher;

/// Voucher v2's known limits (data cap, speed limits) are enforced here; entries of unknown
/// enforceable types were already refused by `voucher::verify` as "unsupported limit".
impl Gate for Sessions {
    fn redeem(&mut self, input: &str, mac: Mac, now: i64) -> Result<Access, RedeemError> {
        let v = match voucher::verify(input, &self.keyring) {
            Ok(v) => v,
            Err(why) => {
                if let Err(e) = self.store.record_refusal(Some(mac), &why, now) {
                    eprintln!("wifiposd: cannot record a refusal: {e}");
                }
                return Err(RedeemError::Refused(why));
            }
        };
        let r = match self.store.redeem(&v, mac, Sessions::clock(now)) {
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
