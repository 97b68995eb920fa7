//! The session rules of VOUCHER.md, as pure functions of (verified voucher, what the store
//! knows, the clock). No I/O and no clock of its own: `store` reads the state, asks here, and
//! writes the outcome in the same transaction.
//!
//! Rules: access starts at the first redemption and ends for all of a voucher's devices at
//! `first_redeemed_at + duration_s`; up to `max_devices` distinct MACs; a MAC already on the
//! voucher redeeming again is idempotent; a revoked voucher, a passed deadline (only while the
//! clock is trusted), an expired voucher and a full voucher are each refused with their reason.
//! Admin actions (revoke, kick, extend, trust/block a MAC) are decided here too and answered
//! with the [`FirewallAction`]s the daemon must apply; a device that loses one voucher keeps the
//! latest end among its other live vouchers.
//!
//! Boundaries, chosen once: exactly at `ends_at` the time is up; redeeming exactly at
//! `redeem_by` is too late (the voucher must be first used *before* it).
//!
//! Does not touch: SQL, the firewall, the wall clock.

use crate::mac::Mac;
use crate::voucher::{Rejection, Voucher};

/// The router's wall clock, and whether it can be trusted yet (NTP has synced). A router
/// boots with a stale clock: until it is trusted, deadlines are not enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: i64,
    pub trusted: bool,
}

/// What the store knows about one voucher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoucherState {
    /// `None` until first redeemed.
    pub ends_at: Option<i64>,
    pub revoked: bool,
    /// Its data allowance was used up (access ended for all its devices).
    pub data_used_up: bool,
    /// The devices already on the voucher.
    pub devices: Vec<Mac>,
}

/// A redemption the rules allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// When the voucher's access ends (the same for all its devices).
    pub ends_at: i64,
    /// This redemption starts the voucher's clock.
    pub first_use: bool,
    /// This device takes a new slot.
    pub new_device: bool,
    /// Devices on the voucher after this redemption.
    pub devices: u8,
}

/// Decides one redemption of `v` by `mac`.
pub fn redeem(v: &Voucher, st: &VoucherState, mac: Mac, clock: Clock) -> Result<Grant, Rejection> {
    if st.revoked {
        return Err(Rejection::Revoked);
    }
    if st.data_used_up {
        return Err(Rejection::DataUsedUp);
    }
    let (ends_at, first_use) = match st.ends_at {
        None => {
            // The deadline counts only on a trusted clock: a stale clock after boot must not
            // refuse a customer who just paid. Redeeming exactly at redeem_by is too late.
            if clock.trusted && v.redeem_by != 0 && clock.now >= i64::from(v.redeem_by) {
                return Err(Rejection::DeadlinePassed {
                    redeem_by: v.redeem_by,
                });
            }
            (v.ends_at(clock.now), true)
        }
        Some(ends_at) => (ends_at, false),
    };
    // Exactly at ends_at the time is up.
    if clock.now >= ends_at {
        return Err(Rejection::Expired { ended_at: ends_at });
    }
    let known = st.devices.contains(&mac);
    if !known && st.devices.len() >= usize::from(v.max_devices) {
        return Err(Rejection::DeviceLimit {
            max_devices: v.max_devices,
        });
    }
    Ok(Grant {
        ends_at,
        first_use,
        new_device: !known,
        devices: (st.devices.len() + usize::from(!known)) as u8,
    })
}

/// Which device of a full voucher gives its place to a new one: the one idle longest, if no
/// traffic was seen from it for at least `idle_s` seconds (`0` = never replace). `devices`
/// holds each device and when it was last active (traffic, or joining the voucher).
pub fn idle_to_replace(devices: &[(Mac, i64)], now: i64, idle_s: i64) -> Option<Mac> {
    if idle_s <= 0 {
        return None;
    }
    devices
        .iter()
        .filter(|(_, active)| now - active >= idle_s)
        .min_by_key(|(m, active)| (*active, *m))
        .map(|(m, _)| *m)
}

/// How long a device may stay in the firewall: until the latest end among its live vouchers.
/// `None` when none is live (remove it).
pub fn device_until(ends: impl IntoIterator<Item = i64>, now: i64) -> Option<i64> {
    ends.into_iter().filter(|&e| e > now).max()
}

/// What the firewall must do after an admin action or a redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallAction {
    /// Let `mac` through until `until` (absolute Unix seconds).
    Allow { mac: Mac, until: i64 },
    /// Take `mac` out of the allowed set.
    Remove { mac: Mac },
}

impl FirewallAction {
    pub fn mac(&self) -> Mac {
        match self {
            FirewallAction::Allow { mac, .. } | FirewallAction::Remove { mac } => *mac,
        }
    }
}

/// After a voucher's devices lost that voucher (revoked, or a device kicked): each device keeps
/// the time of its other live vouchers, or is removed. `others(mac)` gives a device's remaining
/// vouchers' ends.
pub fn after_loss(
    macs: &[Mac],
    now: i64,
    mut others: impl FnMut(Mac) -> Vec<i64>,
) -> Vec<FirewallAction> {
    macs.iter()
        .map(|&mac| match device_until(others(mac), now) {
            Some(until) => FirewallAction::Allow { mac, until },
            None => FirewallAction::Remove { mac },
        })
        .collect()
}

/// An admin's standing rule for one MAC, beside (not part of) any voucher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MacRule {
    /// Staff device: let through without a voucher (nft set `trusted`).
    Trusted,
    /// Never let through, even with a voucher (nft set `blocked`).
    Blocked,
}

impl MacRule {
    /// The stable name stored in the database and the event log.
    pub fn code(self) -> &'static str {
        match self {
            MacRule::Trusted => "trusted",
            MacRule::Blocked => "blocked",
        }
    }

    pub fn from_code(s: &str) -> Option<MacRule> {
        match s {
            "trusted" => Some(MacRule::Trusted),
            "blocked" => Some(MacRule::Blocked),
            _ => None,
        }
    }
}

/// What the daemon must change after a MAC's rule changed from `from` to `to`: the nft sets
/// `trusted`/`blocked` follow `from`/`to`; `session` is what happens to the device's element in
/// `allowed` (a blocked device leaves it; an unblocked one gets its vouchers' time back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub mac: Mac,
    pub from: Option<MacRule>,
    pub to: Option<MacRule>,
    pub session: Option<FirewallAction>,
}

/// Decides a rule change for `mac`, whose live vouchers end at `ends`.
pub fn rule_change(
    mac: Mac,
    from: Option<MacRule>,
    to: Option<MacRule>,
    ends: impl IntoIterator<Item = i64>,
    now: i64,
) -> RuleChange {
    let session = match (from, to) {
        (_, Some(MacRule::Blocked)) => Some(FirewallAction::Remove { mac }),
        (Some(MacRule::Blocked), _) => {
            device_until(ends, now).map(|until| FirewallAction::Allow { mac, until })
        }
        _ => None,
    };
    RuleChange {
        mac,
        from,
        to,
        session,
    }
}

/// A voucher's end after an admin adds `secs`: counted from now if its time was already up,
/// so an extension always gives the customer `secs` of access. `None` when `secs` is not
/// positive (shortening is a revocation plus a new voucher, not an extension).
pub fn extended_end(ends_at: i64, secs: i64, now: i64) -> Option<i64> {
    (secs > 0).then(|| ends_at.max(now).saturating_add(secs))
}

/// Whether a voucher's expiry should be logged now (once, by the store): it was used, not
/// revoked, and its time is up.
pub fn has_expired(ends_at: Option<i64>, revoked: bool, now: i64) -> bool {
    !revoked && ends_at.is_some_and(|e| now >= e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;

    fn voucher(max: u8, redeem_by: u32) -> Voucher {
        Voucher {
            key_id: KeyId([1; 4]),
            serial: 1,
            issued_at: 1000,
            redeem_by,
            duration_s: 3600,
            max_devices: max,
            purchase_ref: String::new(),
            ext: None,
        }
    }

    const T: Clock = Clock {
        now: 10_000,
        trusted: true,
    };

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn first_redemption_starts_the_clock() {
        let g = redeem(&voucher(3, 0), &VoucherState::default(), mac(1), T).unwrap();
        assert_eq!(g.ends_at, 13_600);
        assert!(g.first_use && g.new_device);
        assert_eq!(g.devices, 1);
    }

    #[test]
    fn all_devices_share_the_first_redemptions_end() {
        let st = VoucherState {
            ends_at: Some(12_000),
            devices: vec![mac(1)],
            ..Default::default()
        };
        let g = redeem(&voucher(3, 0), &st, mac(2), T).unwrap();
        assert_eq!(g.ends_at, 12_000);
        assert!(!g.first_use && g.new_device);
    }

    #[test]
    fn the_nth_device_fits_and_the_next_is_refused_with_the_limit_reason() {
        let st = VoucherState {
            ends_at: Some(12_000),
            devices: vec![mac(1), mac(2)],
            ..Default::default()
        };
        assert_eq!(redeem(&voucher(3, 0), &st, mac(3), T).unwrap().devices, 3);
        let full = VoucherState {
            devices: vec![mac(1), mac(2), mac(3)],
            ..st
        };
        assert_eq!(
            redeem(&voucher(3, 0), &full, mac(4), T),
            Err(Rejection::DeviceLimit { max_devices: 3 })
        );
        // A device already on the voucher is not a new one.
        let again = redeem(&voucher(3, 0), &full, mac(2), T).unwrap();
        assert!(!again.new_device);
        assert_eq!(again.devices, 3);
    }

    #[test]
    fn a_voucher_whose_data_is_used_up_is_refused_even_to_its_own_devices() {
        let st = VoucherState {
            ends_at: Some(12_000),
            devices: vec![mac(1)],
            data_used_up: true,
            ..Default::default()
        };
        assert_eq!(
            redeem(&voucher(3, 0), &st, mac(1), T),
            Err(Rejection::DataUsedUp)
        );
        assert_eq!(
            redeem(&voucher(3, 0), &st, mac(2), T),
            Err(Rejection::DataUsedUp)
        );
    }

    #[test]
    fn the_device_idle_longest_is_replaced_only_after_the_idle_time() {
        let devs = [(mac(1), 1_000), (mac(2), 400), (mac(3), 700)];
        assert_eq!(idle_to_replace(&devs, 1_000, 600), Some(mac(2)));
        assert_eq!(idle_to_replace(&devs, 999, 600), None);
        assert_eq!(idle_to_replace(&devs, 1_000, 0), None, "0 = never");
        assert_eq!(idle_to_replace(&[], 1_000, 600), None);
    }

    #[test]
    fn exactly_at_the_end_the_time_is_up() {
        let st = VoucherState {
            ends_at: Some(T.now),
            devices: vec![mac(1)],
            ..Default::default()
        };
        assert_eq!(
            redeem(&voucher(3, 0), &st, mac(1), T),
            Err(Rejection::Expired { ended_at: T.now })
        );
        let one_before = VoucherState {
            ends_at: Some(T.now + 1),
            ..st
        };
        assert!(redeem(&voucher(3, 0), &one_before, mac(1), T).is_ok());
    }

    #[test]
    fn the_deadline_counts_only_on_a_trusted_clock() {
        let v = voucher(1, T.now as u32);
        let st = VoucherState::default();
        assert_eq!(
            redeem(&v, &st, mac(1), T),
            Err(Rejection::DeadlinePassed {
                redeem_by: T.now as u32
            })
        );
        let stale = Clock {
            trusted: false,
            ..T
        };
        assert!(redeem(&v, &st, mac(1), stale).is_ok());
        let before = voucher(1, T.now as u32 + 1);
        assert!(redeem(&before, &st, mac(1), T).is_ok());
    }

    #[test]
    fn issued_in_the_routers_future_is_fine() {
        let mut v = voucher(1, 0);
        v.issued_at = u32::MAX;
        assert!(redeem(&v, &VoucherState::default(), mac(1), T).is_ok());
    }

    #[test]
    fn revoked_is_refused_first() {
        let st = VoucherState {
            revoked: true,
            ..Default::default()
        };
        assert_eq!(
            redeem(&voucher(1, 0), &st, mac(1), T),
            Err(Rejection::Revoked)
        );
    }

    #[test]
    fn a_device_keeps_the_latest_of_its_vouchers() {
        assert_eq!(device_until([5, 20, 15], 10), Some(20));
        assert_eq!(device_until([5, 10], 10), None);
        let acts = after_loss(&[mac(1), mac(2)], 10, |m| {
            if m == mac(1) {
                vec![30]
            } else {
                vec![]
            }
        });
        assert_eq!(
            acts,
            vec![
                FirewallAction::Allow {
                    mac: mac(1),
                    until: 30
                },
                FirewallAction::Remove { mac: mac(2) }
            ]
        );
    }

    #[test]
    fn blocking_a_device_takes_it_out_and_unblocking_gives_its_time_back() {
        let b = rule_change(mac(1), None, Some(MacRule::Blocked), [500], 100);
        assert_eq!(b.session, Some(FirewallAction::Remove { mac: mac(1) }));
        let u = rule_change(mac(1), Some(MacRule::Blocked), None, [500, 300], 100);
        assert_eq!(
            u.session,
            Some(FirewallAction::Allow {
                mac: mac(1),
                until: 500
            })
        );
        let gone = rule_change(mac(1), Some(MacRule::Blocked), None, [100], 100);
        assert_eq!(gone.session, None, "its time ran out while blocked");
        let t = rule_change(mac(1), None, Some(MacRule::Trusted), [500], 100);
        assert_eq!(t.session, None, "trust is the trusted set's business");
        assert_eq!(
            MacRule::from_code(MacRule::Blocked.code()),
            Some(MacRule::Blocked)
        );
        assert_eq!(MacRule::from_code("x"), None);
    }

    #[test]
    fn extending_counts_from_now_once_the_time_is_up_and_never_shortens() {
        assert_eq!(extended_end(1000, 60, 500), Some(1060));
        assert_eq!(extended_end(1000, 60, 2000), Some(2060));
        assert_eq!(extended_end(1000, 0, 500), None);
        assert_eq!(extended_end(1000, -60, 500), None);
        assert_eq!(extended_end(i64::MAX - 1, 60, 0), Some(i64::MAX));
    }

    #[test]
    fn a_voucher_expires_exactly_at_its_end_and_never_when_unused_or_revoked() {
        assert!(!has_expired(Some(100), false, 99));
        assert!(has_expired(Some(100), false, 100));
        assert!(!has_expired(None, false, 100));
        assert!(!has_expired(Some(100), true, 200));
    }

    #[test]
    fn the_deadline_is_not_enforced_before_the_clock_is_trusted_even_long_after() {
        let v = voucher(1, 5_000);
        let stale = Clock {
            now: 9_999_999,
            trusted: false,
        };
        let g = redeem(&v, &VoucherState::default(), mac(1), stale).unwrap();
        assert_eq!(g.ends_at, 9_999_999 + 3600);
    }

    #[test]
    fn a_redemption_one_second_before_the_deadline_is_in_time() {
        let v = voucher(1, T.now as u32 + 1);
        assert!(redeem(&v, &VoucherState::default(), mac(1), T).is_ok());
    }

    #[test]
    fn a_used_voucher_past_its_deadline_still_serves_its_devices() {
        // The deadline is for the first redemption only.
        let v = voucher(2, 100);
        let st = VoucherState {
            ends_at: Some(T.now + 60),
            devices: vec![mac(1)],
            ..Default::default()
        };
        assert_eq!(redeem(&v, &st, mac(2), T).unwrap().ends_at, T.now + 60);
        assert_eq!(redeem(&v, &st, mac(1), T).unwrap().ends_at, T.now + 60);
    }

    #[test]
    fn revocation_wins_over_every_other_reason() {
        let st = VoucherState {
            ends_at: Some(1),
            revoked: true,
            data_used_up: true,
            devices: vec![mac(1)],
        };
        assert_eq!(
            redeem(&voucher(1, 1), &st, mac(9), T),
            Err(Rejection::Revoked)
        );
    }
}
