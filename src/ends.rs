//! When each paid device's access ends, so the daemon can end its connections at that very
//! second (the kernel drops the MAC from the `allowed` set by itself, but open connections
//! would carry on). Pure: a schedule in memory, fed by the daemon wherever access is granted,
//! changed or taken away.

use std::collections::{BTreeSet, HashMap};

use crate::mac::Mac;

#[derive(Debug, Default, Clone)]
pub struct Ends {
    by_mac: HashMap<Mac, i64>,
    by_time: BTreeSet<(i64, Mac)>,
}

impl Ends {
    pub fn new() -> Ends {
        Ends::default()
    }

    /// `mac`'s access now ends at `until` (Unix seconds).
    pub fn set(&mut self, mac: Mac, until: i64) {
        if let Some(old) = self.by_mac.insert(mac, until) {
            self.by_time.remove(&(old, mac));
        }
        self.by_time.insert((until, mac));
    }

    /// `mac` no longer has a scheduled end (access taken away now, or trusted).
    pub fn remove(&mut self, mac: Mac) {
        if let Some(old) = self.by_mac.remove(&mac) {
            self.by_time.remove(&(old, mac));
        }
    }

    /// Replaces the whole schedule.
    pub fn reset(&mut self, all: &[(Mac, i64)]) {
        *self = Ends::new();
        for &(m, u) in all {
            self.set(m, u);
        }
    }

    /// The next end, if any.
    pub fn next(&self) -> Option<i64> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Takes out and returns every device whose end is at or before `now`.
    pub fn due(&mut self, now: i64) -> Vec<Mac> {
        let mut out = Vec::new();
        while let Some(&(t, m)) = self.by_time.first() {
            if t > now {
                break;
            }
            self.by_time.remove(&(t, m));
            self.by_mac.remove(&m);
            out.push(m);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_come_due_in_order_and_moves_replace_the_old_time() {
        let (a, b, c) = (
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            Mac([2, 0, 0, 0, 0, 3]),
        );
        let mut e = Ends::new();
        e.reset(&[(a, 100), (b, 50)]);
        e.set(c, 70);
        e.set(b, 200); // extended
        assert_eq!(e.next(), Some(70));
        assert_eq!(e.due(69), vec![]);
        assert_eq!(e.due(100), vec![c, a]);
        e.remove(b);
        assert!(e.is_empty());
        assert_eq!(e.next(), None);
        assert_eq!(e.due(i64::MAX), vec![]);
    }
}
