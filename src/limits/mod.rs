//! Per-device speed limits (download and upload, in kbit/s) enforced by the kernel's traffic
//! shaping, independent of the firewall: a paid device keeps its session in
//! [`crate::firewall`]; this module only decides how fast its packets may flow.
//!
//! Owns: the [`Rates`] type, the [`Limiter`] trait, the pure arithmetic behind the kernel
//! objects (kbit/s to bytes/s, burst, class numbers), [`MemoryLimiter`] for tests of callers,
//! and, in [`tc`], [`TcLimiter`]: HTB shaping over rtnetlink (download on the guest
//! interface's egress, upload on an ifb device fed by a per-device redirect on the guest
//! interface's ingress). Shaping rather than nftables policing because it measured better:
//! see BENCHMARKS.md ("Speed limits").

pub mod tc;

use std::collections::BTreeMap;

use crate::mac::Mac;

pub use tc::TcLimiter;

/// A device's speed limits; None = unlimited that way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rates {
    pub down_kbit: Option<u32>,
    pub up_kbit: Option<u32>,
}

impl Rates {
    /// Neither way limited.
    pub fn is_unlimited(&self) -> bool {
        self.down_kbit.is_none() && self.up_kbit.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("there is no network interface called {0} on this router, so no speed limits can be set on it")]
    NoInterface(String),
    #[error("a speed limit of 0 kbit/s for {0} would cut the device off completely; give at least 8 kbit/s or no limit")]
    ZeroRate(Mac),
    #[error("too many devices with speed limits at once (at most {0})")]
    TooManyDevices(usize),
    #[error("speed limits were changed before they were set up on the guest interface (a bug in wifipos)")]
    NotInstalled,
    #[error("the router's kernel refused to {op}: {source} (speed limits need traffic shaping in the kernel: the kmod-sched-core and kmod-ifb packages)")]
    Kernel {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub trait Limiter {
    /// (Re)builds the limiter on the guest interface with these devices' limits (atomic where the kernel allows).
    fn install(&mut self, guest_iface: &str, devices: &[(Mac, Rates)]) -> Result<(), LimitError>;
    /// Sets or changes each device's limits; Rates::default() removes the device's limits.
    fn set(&mut self, devices: &[(Mac, Rates)]) -> Result<(), LimitError>;
    /// Whether the kernel state is still there (e.g. gone after `nft flush ruleset` or the bridge being recreated): false = call install again.
    fn intact(&mut self) -> Result<bool, LimitError>;
}

/// The most limited devices at once: class numbers 2..=4095 (u32 filter node ids have 12 bits).
pub const MAX_DEVICES: usize = 4094;

/// kbit/s (1000 bit/s, as speed tests and vouchers say it) to bytes/s, saturating at what the
/// kernel's 32-bit rate field holds (34 Gbit/s, far above any Wi-Fi).
pub fn kbit_to_bytes(kbit: u32) -> u32 {
    (u64::from(kbit) * 1000 / 8).min(u64::from(u32::MAX)) as u32
}

/// The burst a shaped device may send at line rate before it is held to its rate: 20 ms worth
/// of its rate, but never less than two full Ethernet frames (below that, HTB stalls).
pub fn burst_bytes(rate_bytes: u32) -> u32 {
    (rate_bytes / 50).max(2 * 1514)
}

/// The length (in packets) of a shaped device's queue: about 200 ms at its rate in full
/// frames, at least 16 (TCP needs room to grow its window), at most 100 (a NIC's txqueuelen
/// tenth): a longer queue only adds seconds of delay at low rates.
pub fn queue_packets(rate_bytes: u32) -> u32 {
    (rate_bytes / 5 / 1514).clamp(16, 100)
}

/// HTB's time unit ("psched ticks", 64 ns) needed to send `bytes` at `rate_bytes` per second.
pub fn xmit_ticks(rate_bytes: u32, bytes: u32) -> u32 {
    let ns = u64::from(bytes) * 1_000_000_000 / u64::from(rate_bytes.max(1));
    (ns >> 6).min(u64::from(u32::MAX)) as u32
}

/// The validated limits of a batch: later entries for the same MAC win; zero rates refused.
pub fn validate(devices: &[(Mac, Rates)]) -> Result<BTreeMap<Mac, Rates>, LimitError> {
    let mut out = BTreeMap::new();
    for &(mac, r) in devices {
        if r.down_kbit == Some(0) || r.up_kbit == Some(0) {
            return Err(LimitError::ZeroRate(mac));
        }
        out.insert(mac, r);
    }
    Ok(out)
}

/// Hands out class numbers (2..=4095) to devices and takes them back.
#[derive(Debug, Default)]
pub struct Classes {
    by_mac: BTreeMap<Mac, u16>,
    free: Vec<u16>,
    next: u16,
}

impl Classes {
    /// The device's class number, assigning a new one if it has none.
    pub fn get_or_assign(&mut self, mac: Mac) -> Result<u16, LimitError> {
        if let Some(&c) = self.by_mac.get(&mac) {
            return Ok(c);
        }
        let c = match self.free.pop() {
            Some(c) => c,
            None => {
                let c = self.next.max(2);
                if usize::from(c) > MAX_DEVICES + 1 {
                    return Err(LimitError::TooManyDevices(MAX_DEVICES));
                }
                self.next = c + 1;
                c
            }
        };
        self.by_mac.insert(mac, c);
        Ok(c)
    }

    pub fn get(&self, mac: &Mac) -> Option<u16> {
        self.by_mac.get(mac).copied()
    }

    pub fn release(&mut self, mac: &Mac) {
        if let Some(c) = self.by_mac.remove(mac) {
            self.free.push(c);
        }
    }
}

/// Records what it was told, for tests of callers; `intact` answers what the test sets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryLimiter {
    /// The guest interface of the last install.
    pub iface: Option<String>,
    /// The limits now in force, by device.
    pub devices: BTreeMap<Mac, Rates>,
    /// How many times `install` ran.
    pub installs: usize,
    /// What `intact` answers (true after each install).
    pub kernel_intact: bool,
}

impl Limiter for MemoryLimiter {
    fn install(&mut self, guest_iface: &str, devices: &[(Mac, Rates)]) -> Result<(), LimitError> {
        let devices = validate(devices)?;
        self.iface = Some(guest_iface.to_owned());
        self.devices = devices
            .into_iter()
            .filter(|(_, r)| !r.is_unlimited())
            .collect();
        self.installs += 1;
        self.kernel_intact = true;
        Ok(())
    }

    fn set(&mut self, devices: &[(Mac, Rates)]) -> Result<(), LimitError> {
        if self.iface.is_none() {
            return Err(LimitError::NotInstalled);
        }
        for (mac, r) in validate(devices)? {
            if r.is_unlimited() {
                self.devices.remove(&mac);
            } else {
                self.devices.insert(mac, r);
            }
        }
        Ok(())
    }

    fn intact(&mut self) -> Result<bool, LimitError> {
        Ok(self.kernel_intact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn kbit_is_a_thousand_bits_and_saturates() {
        assert_eq!(kbit_to_bytes(2000), 250_000);
        assert_eq!(kbit_to_bytes(512), 64_000);
        assert_eq!(kbit_to_bytes(1), 125);
        assert_eq!(kbit_to_bytes(u32::MAX), u32::MAX);
    }

    #[test]
    fn burst_is_20ms_with_a_floor_of_two_frames() {
        assert_eq!(burst_bytes(250_000), 5000);
        assert_eq!(burst_bytes(64_000), 3028);
        assert_eq!(burst_bytes(12_500_000), 250_000);
    }

    #[test]
    fn queues_hold_about_200ms() {
        assert_eq!(queue_packets(250_000), 33);
        assert_eq!(queue_packets(64_000), 16);
        assert_eq!(queue_packets(125_000_000), 100);
    }

    #[test]
    fn ticks_are_64ns() {
        // 5000 bytes at 250 kB/s take 20 ms = 312 500 ticks of 64 ns.
        assert_eq!(xmit_ticks(250_000, 5000), 312_500);
        assert_eq!(xmit_ticks(0, 1), (1_000_000_000u64 >> 6) as u32);
    }

    #[test]
    fn zero_rates_are_refused_and_later_entries_win() {
        let r = Rates {
            down_kbit: Some(0),
            up_kbit: None,
        };
        assert!(matches!(validate(&[(mac(1), r)]), Err(LimitError::ZeroRate(m)) if m == mac(1)));
        let a = Rates {
            down_kbit: Some(1),
            up_kbit: None,
        };
        let b = Rates {
            down_kbit: None,
            up_kbit: Some(9),
        };
        let v = validate(&[(mac(1), a), (mac(1), b)]).unwrap();
        assert_eq!(v.get(&mac(1)), Some(&b));
    }

    #[test]
    fn classes_are_reused_and_bounded() {
        let mut c = Classes::default();
        assert_eq!(c.get_or_assign(mac(1)).unwrap(), 2);
        assert_eq!(c.get_or_assign(mac(2)).unwrap(), 3);
        assert_eq!(c.get_or_assign(mac(1)).unwrap(), 2);
        c.release(&mac(1));
        assert_eq!(c.get(&mac(1)), None);
        assert_eq!(c.get_or_assign(mac(3)).unwrap(), 2);
        let mut full = Classes::default();
        for i in 0..MAX_DEVICES {
            full.get_or_assign(Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]))
                .unwrap();
        }
        assert!(matches!(
            full.get_or_assign(Mac([4; 6])),
            Err(LimitError::TooManyDevices(_))
        ));
        assert!(full.get(&Mac([2, 0, 0, 0, 0x0f, 0xfd])).unwrap() <= 4095);
    }

    #[test]
    fn memory_limiter_records_and_removes() {
        let mut m = MemoryLimiter::default();
        let r = Rates {
            down_kbit: Some(2000),
            up_kbit: Some(512),
        };
        assert!(matches!(
            m.set(&[(mac(1), r)]),
            Err(LimitError::NotInstalled)
        ));
        m.install("br-guest", &[(mac(1), r), (mac(2), Rates::default())])
            .unwrap();
        assert_eq!(m.devices.len(), 1);
        assert!(m.intact().unwrap());
        m.set(&[(mac(1), Rates::default()), (mac(3), r)]).unwrap();
        assert_eq!(m.devices.keys().copied().collect::<Vec<_>>(), vec![mac(3)]);
        assert_eq!(m.installs, 1);
    }
}
