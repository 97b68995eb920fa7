//! The kernel side of [`Firewall`]: the whole `inet wifipos` table (and `netdev wifipos`, the
//! download counting on the guest interface's egress hook) and every element change over
//! netlink (nftnl + mnl, with `nftnl-sys` for set flags, element timeouts, intervals and
//! dumps, which the safe API lacks), always in batches with every acknowledgement read back.
//!
//! Owns: [`NetlinkFirewall`] and its [`Firewall`] operations: which batches each one sends, in
//! what chunks, and what an install left behind for [`Firewall::check`]. Does not own the
//! messages themselves, the socket or the reading back; those are the submodules', which import
//! nothing from here:
//!
//! - `proto`: the table's name and the protocol's numbers (message types, flags, families);
//! - `sets`: set objects and element messages (sets, elements in chunks, element lists);
//! - `install`: the install batch, the chains and rules of [`super::ruleset`]'s plan;
//! - `socket`: sending batches and requests, reading every acknowledgement;
//! - `read`: reading the table back (handle, chains, rules, sets, set elements) and comparing
//!   it with what was built.
//!
//! Reading the traffic counters and the netdev table back is [`super::usage`]'s.

mod install;
mod proto;
mod read;
mod sets;
mod socket;

use std::net::IpAddr;
use std::time::Duration;

use nftnl::{Batch, MsgType, ProtoFamily, Table};

use self::install::install_batch;
use self::proto::TABLE;
use self::read::{alloc_set, differences, listing, table_handle, Built};
use self::sets::{
    add_elems, allowed_elems, count, dedup, flush_set, garden_elems, mac_elems, Elem, ElemOp,
};
use self::socket::{send_and_process, BatchSocket};
use super::ruleset::{self, SetSpec};
use super::{usage, Firewall, FirewallError, Mac, Ruleset, TableHealth, Usage};

pub(super) use self::read::dump_elems;
pub(super) use self::sets::SetObj;

/// MACs per batch for `allow`/`remove` (up to six element operations each: the allowed set and
/// the two counting sets): well below what makes the kernel answer ENOBUFS even with default
/// socket buffers (tests/firewall.rs moves 10 000 in and out).
const CHUNK: usize = 4000;

/// The netlink firewall.
#[derive(Default)]
pub struct NetlinkFirewall {
    built: Option<Built>,
    /// One socket for every batch: closing a netfilter socket that carried a transaction costs
    /// the kernel 4-15 ms (measured with strace here), more than the batch itself.
    batches: Option<BatchSocket>,
    /// Whether `netdev wifipos` (download counting) is there to add to: `None` until an install
    /// or the first element change of a firewall that did not install (then looked up).
    egress: Option<bool>,
    /// Why the last install went without download counting (the kernel's refusal).
    no_egress: Option<String>,
}

impl std::fmt::Debug for NetlinkFirewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkFirewall")
            .field("built", &self.built)
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

impl NetlinkFirewall {
    pub fn new() -> NetlinkFirewall {
        NetlinkFirewall::default()
    }

    /// Why downloads are not counted, when the last install had to leave `netdev wifipos` out
    /// (the kernel refused the egress chain: before 5.16, or no such guest interface).
    pub fn why_downloads_uncounted(&self) -> Option<&str> {
        self.no_egress.as_deref()
    }

    /// Whether `netdev wifipos` is there to put elements in (looked up once when not built by
    /// this firewall).
    fn egress(&mut self) -> Result<bool, FirewallError> {
        if let Some(e) = self.egress {
            return Ok(e);
        }
        let e = usage::netdev()?.is_some_and(|n| n.sets.iter().any(|(s, _)| s == "down"));
        self.egress = Some(e);
        Ok(e)
    }
}

impl NetlinkFirewall {
    /// Sets each MAC's timeout, one batch per chunk: ensure-present, delete, add with the new
    /// timeout — no listing first, so it cannot race an element's expiry. Big chunks first try
    /// a plain exclusive add, which is all new sessions need; if any MAC was already there
    /// (EEXIST, the kernel applied nothing), the chunk goes again in the full form.
    fn refresh(&mut self, give: &[(Mac, Duration)]) -> Result<(), FirewallError> {
        const OP: &str = "let devices through (add to the allowed set)";
        let egress = give.is_empty() || self.egress()?;
        // The kernel aborts a failed batch at a cost of ~15 ms (measured), so a few MACs (a
        // redemption, an admin command) go straight to the form that works whether or not they
        // are there; only big chunks try the one-message-per-MAC add first.
        const SMALL: usize = 64;
        give.chunks(CHUNK).try_for_each(|chunk| {
            if chunk.len() > SMALL {
                let mut batch = Batch::new();
                add_elems(
                    &mut batch,
                    &ruleset::ALLOWED,
                    ElemOp::Create,
                    &allowed_elems(chunk),
                )?;
                count(&mut batch, chunk, egress)?;
                match send_and_process(&mut self.batches, &batch.finalize(), OP) {
                    Err(FirewallError::Kernel { source, .. })
                        if source.raw_os_error() == Some(libc::EEXIST) => {}
                    other => return other,
                }
            }
            let plain: Vec<Mac> = chunk.iter().map(|(m, _)| *m).collect();
            let mut batch = Batch::new();
            add_elems(
                &mut batch,
                &ruleset::ALLOWED,
                ElemOp::Ensure,
                &mac_elems(&plain),
            )?;
            add_elems(
                &mut batch,
                &ruleset::ALLOWED,
                ElemOp::Delete,
                &mac_elems(&plain),
            )?;
            add_elems(
                &mut batch,
                &ruleset::ALLOWED,
                ElemOp::Create,
                &allowed_elems(chunk),
            )?;
            count(&mut batch, chunk, egress)?;
            send_and_process(&mut self.batches, &batch.finalize(), OP)
        })
    }

    /// Replaces the elements of one of the standing sets in one batch.
    fn replace(
        &mut self,
        spec: &SetSpec,
        elems: &[Elem],
        op: &'static str,
    ) -> Result<(), FirewallError> {
        let mut batch = Batch::new();
        flush_set(&mut batch, spec)?;
        add_elems(&mut batch, spec, ElemOp::Ensure, elems)?;
        send_and_process(&mut self.batches, &batch.finalize(), op)
    }
}

impl Firewall for NetlinkFirewall {
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError> {
        const OP: &str = "install the table inet wifipos";
        let (batch, rule_counts, egress_rules) = install_batch(rules, allowed, true)?;
        let egress = match send_and_process(&mut self.batches, &batch, OP) {
            Ok(()) => {
                self.no_egress = None;
                true
            }
            // Most likely the egress hook (kernels before 5.16) or the guest interface (not
            // there yet): the portal works without download counting, so go on without it.
            Err(first) => {
                let (batch, _, _) = install_batch(rules, allowed, false)?;
                send_and_process(&mut self.batches, &batch, OP)?;
                // Left over from an earlier install, it would count for nobody. Best effort: a
                // kernel without the netdev family has none to delete.
                let mut del = Batch::new();
                del.add(&Table::new(TABLE, ProtoFamily::NetDev), MsgType::Add);
                del.add(&Table::new(TABLE, ProtoFamily::NetDev), MsgType::Del);
                let _ = send_and_process(
                    &mut self.batches,
                    &del.finalize(),
                    "delete the table netdev wifipos",
                );
                self.no_egress = Some(first.to_string());
                false
            }
        };
        self.egress = Some(egress);
        let handle = table_handle()?.ok_or_else(|| {
            FirewallError::Install("the table is not there after installing it".into())
        })?;
        let netdev = match (egress, usage::netdev()?) {
            (false, _) => None,
            (true, Some(n)) => Some((n.handle, egress_rules)),
            (true, None) => {
                return Err(FirewallError::Install(
                    "the table netdev wifipos is not there after installing it".into(),
                ))
            }
        };
        self.built = Some(Built {
            handle,
            rule_counts,
            netdev,
        });
        match self.check()? {
            TableHealth::Intact => Ok(()),
            TableHealth::Missing => Err(FirewallError::Install(
                "the table is not there after installing it".into(),
            )),
            TableHealth::Changed(what) => Err(FirewallError::Install(format!(
                "after installing it, {what}"
            ))),
        }
    }

    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError> {
        let (give, take): (Vec<_>, Vec<_>) = dedup(entries)
            .into_iter()
            .partition(|(_, d)| d.as_secs() >= 1);
        if !take.is_empty() {
            self.remove(&take.iter().map(|(m, _)| *m).collect::<Vec<_>>())?;
        }
        self.refresh(&give)
    }

    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        let macs: Vec<Mac> = dedup(
            &macs
                .iter()
                .map(|m| (*m, Duration::ZERO))
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|(m, _)| m)
        .collect();
        let egress = macs.is_empty() || self.egress()?;
        let sets: &[&SetSpec] = if egress {
            &[&ruleset::ALLOWED, &ruleset::UP, &ruleset::DOWN]
        } else {
            &[&ruleset::ALLOWED, &ruleset::UP]
        };
        // Ensure-then-delete: MACs that were not there are no error.
        macs.chunks(CHUNK).try_for_each(|chunk| {
            let mut batch = Batch::new();
            for spec in sets {
                add_elems(&mut batch, spec, ElemOp::Ensure, &mac_elems(chunk))?;
                add_elems(&mut batch, spec, ElemOp::Delete, &mac_elems(chunk))?;
            }
            send_and_process(
                &mut self.batches,
                &batch.finalize(),
                "remove devices from the allowed set",
            )
        })
    }

    fn list_allowed(&mut self) -> Result<Vec<(Mac, Duration)>, FirewallError> {
        let set = alloc_set()?;
        let mut out = Vec::new();
        dump_elems("list the allowed set", &set, |key, left| {
            if let Some(k) = key.and_then(|k| k.get(..6)) {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(k);
                out.push((Mac(mac), Duration::from_millis(left)));
            }
        })?;
        out.sort();
        Ok(out)
    }

    fn set_trusted(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        self.replace(
            &ruleset::TRUSTED,
            &mac_elems(macs),
            "replace the trusted devices",
        )
    }

    fn set_blocked(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        self.replace(
            &ruleset::BLOCKED,
            &mac_elems(macs),
            "replace the blocked devices",
        )
    }

    fn set_garden(&mut self, prefixes: &[(IpAddr, u8)]) -> Result<(), FirewallError> {
        let g4 = garden_elems(prefixes, true)?;
        let g6 = garden_elems(prefixes, false)?;
        let mut batch = Batch::new();
        flush_set(&mut batch, &ruleset::GARDEN4)?;
        flush_set(&mut batch, &ruleset::GARDEN6)?;
        add_elems(&mut batch, &ruleset::GARDEN4, ElemOp::Create, &g4)?;
        add_elems(&mut batch, &ruleset::GARDEN6, ElemOp::Create, &g6)?;
        send_and_process(
            &mut self.batches,
            &batch.finalize(),
            "replace the walled garden",
        )
    }

    fn check(&mut self) -> Result<TableHealth, FirewallError> {
        let Some(handle) = table_handle()? else {
            return Ok(TableHealth::Missing);
        };
        if let Some(b) = &self.built {
            if b.handle != handle {
                return Ok(TableHealth::Changed(
                    "the table was deleted and created again from outside".into(),
                ));
            }
        }
        let l = match listing() {
            Err(e) if e.is_missing() => return Ok(TableHealth::Missing),
            other => other?,
        };
        if let Some(what) = differences(&l, self.built.as_ref()) {
            return Ok(TableHealth::Changed(what));
        }
        // Download counting: as built, or (not built by us) whatever a kernel with the egress
        // hook would have; a kernel without it gets one rebuild, which finds that out.
        let want = match &self.built {
            Some(b) => b.netdev,
            None if self.egress == Some(false) => None,
            None => Some((0, ruleset::egress_rules().len())),
        };
        let Some((handle, rules)) = want else {
            return Ok(TableHealth::Intact);
        };
        let Some(n) = usage::netdev()? else {
            return Ok(TableHealth::Changed(
                "the table netdev wifipos (download counting) is missing".into(),
            ));
        };
        if self.built.is_some() && n.handle != handle {
            return Ok(TableHealth::Changed(
                "the table netdev wifipos was deleted and created again from outside".into(),
            ));
        }
        Ok(match usage::netdev_differences(&n, rules) {
            None => TableHealth::Intact,
            Some(what) => TableHealth::Changed(what),
        })
    }

    fn usage(&mut self) -> Result<Vec<(Mac, Usage)>, FirewallError> {
        let down = self.egress()?;
        usage::read(down)
    }

    fn counts_downloads(&self) -> bool {
        self.egress != Some(false)
    }
}
