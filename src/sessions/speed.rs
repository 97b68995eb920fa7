//! Speed limits for paid devices: each device gets its current voucher's limits, or the
//! venue's defaults (`default_down_kbit` / `default_up_kbit`) where the voucher sets none, in
//! the kernel's shaper ([`crate::limits`]). The shaper is set up on the guest interface only
//! once some device is limited, so a venue that sells no limits keeps its interface's queueing
//! exactly as it was. Failures are logged, never fatal: a sale goes through unlimited rather
//! than not at all. Not: the shaping itself (`limits`), which devices are paid (`store`).

use crate::limits::Rates;
use crate::mac::Mac;

use super::Sessions;

impl Sessions {
    /// The limits a device gets now: its current voucher's, else the venue's defaults.
    pub fn rates_for(&self, mac: Mac) -> Rates {
        let (down, up) = self.store.rates_of(mac).unwrap_or_else(|e| {
            eprintln!("wifiposd: cannot read speed limits: {e}");
            (None, None)
        });
        Rates {
            down_kbit: down.or(self.cfg.default_down_kbit),
            up_kbit: up.or(self.cfg.default_up_kbit),
        }
    }

    /// (Re)builds the shaper with every paid device's limits, if any device is limited or it
    /// was set up before. Returns how many devices are limited.
    pub fn install_speed_limits(&mut self, now: i64) -> usize {
        let active = match self.store.active_sessions(now) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("wifiposd: cannot read sessions for speed limits: {e}");
                return 0;
            }
        };
        let limited: Vec<(Mac, Rates)> = active
            .iter()
            .map(|(m, _)| (*m, self.rates_for(*m)))
            .filter(|(_, r)| !r.is_unlimited())
            .collect();
        if limited.is_empty() && !self.shaping {
            return 0;
        }
        match self.limiter.install(&self.cfg.guest_iface, &limited) {
            Ok(()) => self.shaping = true,
            Err(e) => eprintln!("wifiposd: cannot set up speed limits: {e}"),
        }
        limited.len()
    }

    /// Gives these devices the limits they have now (none for devices without access).
    pub fn update_speed_limits(&mut self, macs: &[Mac], now: i64) {
        if macs.is_empty() {
            return;
        }
        let rates: Vec<(Mac, Rates)> = macs
            .iter()
            .map(|m| {
                let paid = matches!(self.store.access(*m, now), Ok(Some(_)));
                (
                    *m,
                    if paid {
                        self.rates_for(*m)
                    } else {
                        Rates::default()
                    },
                )
            })
            .collect();
        if !self.shaping {
            if rates.iter().any(|(_, r)| !r.is_unlimited()) {
                self.install_speed_limits(now);
            }
            return;
        }
        if let Err(e) = self.limiter.set(&rates) {
            eprintln!("wifiposd: cannot change speed limits ({e}); setting them up again");
            self.install_speed_limits(now);
        }
    }

    /// Sets the shaper up again if it was removed from outside (the bridge recreated, `tc qdisc
    /// del`).
    pub fn check_speed_limits(&mut self, now: i64) {
        if !self.shaping {
            return;
        }
        match self.limiter.intact() {
            Ok(true) => {}
            Ok(false) => {
                let n = self.install_speed_limits(now);
                eprintln!("wifiposd: the speed limits were removed from outside; set up again for {n} devices");
            }
            Err(e) => eprintln!("wifiposd: cannot check the speed limits: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::firewall::MemoryFirewall;
    use crate::keys::Keyring;
    use crate::limits::{MemoryLimiter, Rates};
    use crate::mac::Mac;
    use crate::portal::Gate as _;
    use crate::sessions::{Sessions, CLOCK_SANE_AFTER};
    use crate::store::Store;
    use crate::voucher::{self, Ext, Limits};
    use ed25519_dalek::SigningKey;

    fn token(key: &SigningKey, serial: u64, limits: Option<Limits>) -> String {
        voucher::Voucher {
            key_id: crate::keys::KeyId::of(&key.verifying_key()),
            serial,
            issued_at: CLOCK_SANE_AFTER as u32,
            redeem_by: 0,
            duration_s: 3600,
            max_devices: 2,
            purchase_ref: String::new(),
            ext: limits.map(Ext::with_limits),
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn vouchers_limits_or_the_venue_defaults_reach_the_shaper_and_leave_with_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let now = CLOCK_SANE_AFTER + 10;
        let cfg = Config {
            default_up_kbit: Some(1000),
            ..Config::default()
        };
        let mut s = Sessions::new(
            Store::open(&dir.path().join("w.db")).unwrap(),
            Box::new(MemoryFirewall::new()),
            Keyring::new([key.verifying_key()]),
            cfg,
        );
        let limiter = std::rc::Rc::new(std::cell::RefCell::new(MemoryLimiter::default()));
        s.limiter = Box::new(Shared(limiter.clone()));
        s.restore(now).unwrap();
        assert_eq!(
            limiter.borrow().installs,
            0,
            "no limited device: interface untouched"
        );

        let a = Mac([2, 0, 0, 0, 0, 1]);
        let fast = Limits {
            down_kbit: Some(2000),
            ..Limits::default()
        };
        s.redeem(&token(&key, 1, Some(fast)), a, now).unwrap();
        let want = Rates {
            down_kbit: Some(2000),
            up_kbit: Some(1000),
        };
        assert_eq!(limiter.borrow().devices.get(&a), Some(&want));
        assert_eq!(limiter.borrow().installs, 1);

        // A v1 voucher: only the venue's default.
        let b = Mac([2, 0, 0, 0, 0, 2]);
        s.redeem(&token(&key, 2, None), b, now).unwrap();
        assert_eq!(
            limiter.borrow().devices.get(&b),
            Some(&Rates {
                down_kbit: None,
                up_kbit: Some(1000)
            })
        );
        // Revoked: its limits go with it; a rebuild after the shaper vanished restores b's.
        let actions = s
            .store
            .revoke(crate::keys::KeyId::of(&key.verifying_key()), 1, now + 1)
            .unwrap();
        s.apply(&actions, now + 1).unwrap();
        assert_eq!(limiter.borrow().devices.get(&a), None);
        limiter.borrow_mut().kernel_intact = false;
        s.check_speed_limits(now + 2);
        assert_eq!(limiter.borrow().installs, 2);
        assert_eq!(limiter.borrow().devices.len(), 1);
    }

    /// The limiter shared with the test, so it can look inside.
    struct Shared(std::rc::Rc<std::cell::RefCell<MemoryLimiter>>);

    impl crate::limits::Limiter for Shared {
        fn install(
            &mut self,
            iface: &str,
            devices: &[(Mac, Rates)],
        ) -> Result<(), crate::limits::LimitError> {
            self.0.borrow_mut().install(iface, devices)
        }
        fn set(&mut self, devices: &[(Mac, Rates)]) -> Result<(), crate::limits::LimitError> {
            self.0.borrow_mut().set(devices)
        }
        fn intact(&mut self) -> Result<bool, crate::limits::LimitError> {
            self.0.borrow_mut().intact()
        }
    }
}
