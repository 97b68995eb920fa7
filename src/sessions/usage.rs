//! Usage: the kernel's per-device byte counters turned into accounting. Reads them (each read
//! folds what moved since the last one into memory), saves that to the store every
//! [`SAVE_EVERY_S`] seconds and at exit (a crash loses at most that interval of accounting), ends
//! vouchers whose data cap is used up, and says how soon to read again: often while a capped
//! voucher is close to its cap, rarely otherwise. Not: the counters themselves (`firewall`),
//! the SQL (`store::usage`), timers (`daemon`).

use std::collections::HashMap;
use std::time::Duration;

use super::{Sessions, SessionsError};
use crate::firewall::Usage;
use crate::mac::Mac;
use crate::store::Delta;

/// Seconds between saves of the accounting to the store (flash): the most a crash or power
/// cut can lose.
pub const SAVE_EVERY_S: i64 = 60;
/// How often counters are read when no voucher with a data cap is live: enough to know which
/// devices are idle.
pub const READ_IDLE: Duration = Duration::from_secs(10);
/// The fastest and slowest reads while a data cap is live. Near the cap the reads come every
/// 100 ms, so a device at 50 Mbit/s overshoots by about 0.6 MB.
pub const READ_CAPPED_MIN: Duration = Duration::from_millis(100);
pub const READ_CAPPED_MAX: Duration = Duration::from_secs(1);

/// What is known about usage that the store does not have yet.
#[derive(Debug, Default)]
pub struct Meter {
    /// The kernel's counters at the last read.
    last: HashMap<Mac, Usage>,
    /// Bytes moved since the last save, per device.
    pending: HashMap<Mac, Delta>,
    /// When the accounting was last saved.
    saved_at: i64,
    /// The time between the last two reads, to estimate how fast a voucher nears its cap.
    interval: Duration,
    /// This daemon built the table its counters are in. Until then counters are not read: a
    /// table left by a previous daemon holds bytes that daemon already saved.
    own_table: bool,
    /// Wakes the daemon's meter timer at once (a capped voucher was just redeemed).
    pub wake: std::rc::Rc<tokio::sync::Notify>,
}

impl Meter {
    /// Folds a read of the kernel's counters in. A counter below its last value means the
    /// element was added again (the table was rebuilt): all of it is new.
    /// Returns the bytes each device moved since the last read.
    pub fn fold(&mut self, read: &[(Mac, Usage)], now: i64) -> HashMap<Mac, u64> {
        let mut moved = HashMap::new();
        let mut seen = HashMap::with_capacity(read.len());
        for (mac, u) in read {
            let before = self.last.get(mac).copied().unwrap_or_default();
            let restarted = u.up_bytes < before.up_bytes || u.down_bytes < before.down_bytes;
            let base = if restarted { Usage::default() } else { before };
            let (up, down) = (u.up_bytes - base.up_bytes, u.down_bytes - base.down_bytes);
            if up > 0 || down > 0 {
                let d = self.pending.entry(*mac).or_insert(Delta {
                    mac: *mac,
                    up: 0,
                    down: 0,
                    active_at: None,
                });
                d.up += up;
                d.down += down;
                d.active_at = Some(now);
                moved.insert(*mac, up + down);
            }
            seen.insert(*mac, *u);
        }
        self.last = seen;
        moved
    }

    /// The table was rebuilt: every counter starts again from zero.
    pub fn counters_restarted(&mut self) {
        self.last.clear();
        self.own_table = true;
    }

    /// When each device with unsaved traffic last moved.
    pub fn last_active(&self) -> Vec<(Mac, i64)> {
        self.pending
            .values()
            .filter_map(|d| Some((d.mac, d.active_at?)))
            .collect()
    }

    /// Every device's bytes not saved yet (what a save would write).
    pub fn unsaved(&self) -> Vec<Delta> {
        self.pending.values().copied().collect()
    }

    /// Bytes not saved yet for these devices.
    pub fn pending_bytes(&self, macs: &[Mac]) -> u64 {
        macs.iter()
            .filter_map(|m| self.pending.get(m))
            .map(|d| d.up + d.down)
            .sum()
    }

    /// Takes what is to be saved.
    fn take(&mut self, now: i64) -> Vec<Delta> {
        self.saved_at = now;
        let mut out: Vec<Delta> = self.pending.drain().map(|(_, d)| d).collect();
        out.sort_by_key(|d| d.mac);
        out
    }
}

/// How long until the next read, for a voucher `remaining` bytes from its cap that moved
/// `moved` bytes over the last `interval`: half the time it would take at that pace to reach
/// the cap, within [`READ_CAPPED_MIN`, `READ_CAPPED_MAX`].
pub fn next_read(remaining: u64, moved: u64, interval: Duration) -> Duration {
    if moved == 0 {
        return READ_CAPPED_MAX;
    }
    let secs = remaining as f64 / (moved as f64 / interval.as_secs_f64().max(0.001)) / 2.0;
    Duration::from_secs_f64(
        secs.clamp(READ_CAPPED_MIN.as_secs_f64(), READ_CAPPED_MAX.as_secs_f64()),
    )
}

impl Sessions {
    /// Reads the kernel's counters into the meter (logged, never fatal: accounting waits for
    /// the next read).
    /// Returns the bytes each device moved since the last read.
    pub fn read_usage(&mut self, now: i64) -> HashMap<Mac, u64> {
        if !self.meter.own_table {
            return HashMap::new();
        }
        match self.firewall.usage() {
            Ok(read) => self.meter.fold(&read, now),
            Err(e) => {
                eprintln!("wifiposd: cannot read the traffic counters: {e}");
                HashMap::new()
            }
        }
    }

    /// Saves what the meter holds to the store.
    pub fn save_usage(&mut self, now: i64) -> Result<(), SessionsError> {
        let deltas = self.meter.take(now);
        if let Err(e) = self.store.add_usage(&deltas) {
            // Keep it for the next try rather than lose it.
            for d in deltas {
                self.meter.pending.insert(d.mac, d);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// One round: read the counters, end vouchers whose data cap is used up, save when due.
    /// Returns how soon to come back.
    pub fn meter_round(&mut self, now: i64) -> Duration {
        let moved = self.read_usage(now);
        let mut next = READ_IDLE;
        match self.enforce_caps(now, &moved) {
            Ok(n) => next = next.min(n),
            Err(e) => eprintln!("wifiposd: cannot check data caps: {e}"),
        }
        if now - self.meter.saved_at >= SAVE_EVERY_S {
            if let Err(e) = self.save_usage(now) {
                eprintln!("wifiposd: cannot save the traffic counters: {e}");
            }
        }
        self.meter.interval = next;
        next
    }

    /// Ends every live voucher whose devices used its cap; returns when to read again.
    fn enforce_caps(
        &mut self,
        now: i64,
        moved: &HashMap<Mac, u64>,
    ) -> Result<Duration, SessionsError> {
        if !self.store.any_capped(now)? {
            return Ok(READ_IDLE);
        }
        let mut next = READ_CAPPED_MAX;
        for c in self.store.capped(now)? {
            let pending = self.meter.pending_bytes(&c.macs);
            let used = c.used + pending;
            if used >= c.cap {
                self.save_usage(now)?;
                let actions = self.store.end_for_data(&c.key_id, c.serial, used, now)?;
                eprintln!(
                    "wifiposd: voucher {}:{} used its {} bytes ({used} counted); access ended",
                    c.key_id, c.serial as u64, c.cap
                );
                self.account_stop(&c.macs, crate::radius::TerminateCause::SessionTimeout, now);
                self.apply(&actions, now)?;
                continue;
            }
            let moved: u64 = c.macs.iter().filter_map(|m| moved.get(m)).sum();
            next = next.min(next_read(c.cap - used, moved, self.meter.interval));
        }
        Ok(next)
    }

    /// Bytes a device's current voucher may still use, if it has a cap: the saved count and
    /// what was counted since.
    pub fn bytes_remaining(&self, mac: Mac, now: i64) -> Option<u64> {
        let c = self.store.capped_of(mac, now).ok()??;
        Some(
            c.cap
                .saturating_sub(c.used + self.meter.pending_bytes(&c.macs)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(up: u64, down: u64) -> Usage {
        Usage {
            up_bytes: up,
            down_bytes: down,
            ..Usage::default()
        }
    }

    #[test]
    fn reads_fold_into_deltas_and_a_restarted_counter_counts_from_zero() {
        let a = Mac([2, 0, 0, 0, 0, 1]);
        let b = Mac([2, 0, 0, 0, 0, 2]);
        let mut m = Meter::default();
        m.fold(&[(a, u(100, 1_000)), (b, u(0, 0))], 10);
        let moved = m.fold(&[(a, u(150, 1_500)), (b, u(0, 0))], 20);
        assert_eq!(moved.get(&a), Some(&550));
        assert_eq!(moved.get(&b), None);
        assert_eq!(m.pending_bytes(&[a]), 1_650);
        assert_eq!(m.pending_bytes(&[b]), 0, "no traffic, no entry");
        // The table was rebuilt: counters restart.
        m.fold(&[(a, u(10, 20))], 30);
        assert_eq!(m.pending_bytes(&[a]), 1_680);
        let saved = m.take(30);
        assert_eq!(saved.len(), 1);
        assert_eq!(
            (saved[0].up, saved[0].down, saved[0].active_at),
            (160, 1_520, Some(30))
        );
        assert_eq!(m.pending_bytes(&[a, b]), 0);
    }

    #[test]
    fn reads_come_faster_as_a_capped_voucher_nears_its_cap() {
        let s = Duration::from_secs(1);
        // 6.25 MB/s (50 Mbit/s), 100 MB left: the slowest pace.
        assert_eq!(next_read(100_000_000, 6_250_000, s), READ_CAPPED_MAX);
        // 1 MB left at that pace: 80 ms to the cap, so the fastest.
        assert_eq!(next_read(1_000_000, 6_250_000, s), READ_CAPPED_MIN);
        // 5 MB left: 0.4 s.
        let d = next_read(5_000_000, 6_250_000, s);
        assert!(
            d > Duration::from_millis(350) && d < Duration::from_millis(450),
            "{d:?}"
        );
        assert_eq!(next_read(1, 0, s), READ_CAPPED_MAX, "idle");
    }
}
