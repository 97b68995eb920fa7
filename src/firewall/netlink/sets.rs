//! Our sets and their elements as netlink messages: the `nftnl_set` objects naming one of the
//! sets of [`crate::firewall::ruleset`] (with its full definition for NEWSET), NEWSETELEM and
//! DELSETELEM messages added to a batch in chunks, and the element lists the firewall puts in
//! them (paid devices with their time left, counted MACs, walled-garden intervals).
//!
//! Owns: building those objects and messages (`unsafe` nftnl FFI, each block with its SAFETY
//! line). Does not own sending them (`socket`), the install batch around them (`install`) or
//! reading sets back (`read`).

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::net::IpAddr;
use std::time::Duration;

use nftnl::nftnl_sys as sys;
use nftnl::{Batch, MsgType, NlMsg};

use super::proto::{
    NFPROTO_INET, NFPROTO_NETDEV, NFT_MSG_DELSETELEM, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM,
    NFT_SET_ELEM_INTERVAL_END, NFT_SET_EVAL, NFT_SET_INTERVAL, NFT_SET_TIMEOUT, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_EXCL, TABLE,
};
use crate::firewall::ruleset::{self, Family, KeyType, SetSpec};
use crate::firewall::{FirewallError, Mac};

/// Elements per netlink message: a few kilobytes, well inside one batch page.
const ELEMS_PER_MSG: usize = 128;

/// An `nftnl_set` naming one of our sets, and the set's family (`NFPROTO_*`), freed on drop.
/// Used for creating the set and for element messages (the elements ride on it).
pub(in crate::firewall) struct SetObj(pub(super) *mut sys::nftnl_set, pub(super) u16);

impl Drop for SetObj {
    fn drop(&mut self) {
        // SAFETY: the pointer came from nftnl_set_alloc (non-null) and is freed exactly once,
        // together with the elements it owns.
        unsafe { sys::nftnl_set_free(self.0) }
    }
}

impl SetObj {
    pub(in crate::firewall) fn new(spec: &SetSpec) -> Result<SetObj, FirewallError> {
        let name = CString::new(spec.name).map_err(|_| oom())?;
        let family = match spec.family {
            Family::Inet => NFPROTO_INET,
            Family::Netdev => NFPROTO_NETDEV,
        };
        // SAFETY: alloc result checked; strings are valid C strings that libnftnl copies.
        unsafe {
            let s = sys::nftnl_set_alloc();
            if s.is_null() {
                return Err(oom());
            }
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, u32::from(family));
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
            Ok(SetObj(s, family))
        }
    }

    /// The full definition (for NEWSET): id, key type and length, flags, and a `counter`
    /// expression for counting sets (sent as NFTA_SET_EXPR; the kernel gives every element
    /// added without expressions of its own a fresh copy, kernels 5.11 and later).
    pub(super) fn define(&self, spec: &SetSpec) -> Result<(), FirewallError> {
        // nft's type ids (ipv4_addr 7, ipv6_addr 8, ether_addr 9), a concatenation being
        // `a << 6 | b`; each field of a concatenated key takes
        // whole 32-bit registers. No field description: as with nft, a hash set needs none
        // (the kernel wants one, with `NFT_SET_CONCAT`, only for interval sets).
        let (ty, len) = match spec.key {
            KeyType::Ether => (9, 6),
            KeyType::Ipv4 => (7, 4),
            KeyType::Ipv6 => (8, 16),
            KeyType::Ipv4Ether => ((7 << 6) | 9, 4 + 8),
            KeyType::Ipv6Ether => ((8 << 6) | 9, 16 + 8),
        };
        let mut flags = 0;
        if spec.dynamic.is_some() {
            flags |= NFT_SET_EVAL;
        }
        if spec.timeout {
            flags |= NFT_SET_TIMEOUT;
        }
        if spec.interval {
            flags |= NFT_SET_INTERVAL;
        }
        // SAFETY: `self.0` is a live set; u32 attributes are copied.
        unsafe {
            sys::nftnl_set_set_u32(self.0, sys::NFTNL_SET_ID as u16, spec.id);
            sys::nftnl_set_set_u32(self.0, sys::NFTNL_SET_KEY_TYPE as u16, ty);
            sys::nftnl_set_set_u32(self.0, sys::NFTNL_SET_KEY_LEN as u16, len);
            sys::nftnl_set_set_u32(self.0, sys::NFTNL_SET_FLAGS as u16, flags);
            if let Some(d) = spec.dynamic {
                sys::nftnl_set_set_u64(
                    self.0,
                    sys::NFTNL_SET_TIMEOUT as u16,
                    u64::from(d.timeout_s) * 1000,
                );
                sys::nftnl_set_set_u32(self.0, sys::NFTNL_SET_DESC_SIZE as u16, d.size);
            }
        }
        if spec.counter {
            // SAFETY: the name is a static C string; the expression is checked for null and
            // then owned by the set (nftnl_set_add_expr, libnftnl 1.1.9 and later), which frees
            // it with itself.
            unsafe {
                let e = sys::nftnl_expr_alloc(c"counter".as_ptr());
                if e.is_null() {
                    return Err(oom());
                }
                sys::nftnl_set_add_expr(self.0, e);
            }
        }
        Ok(())
    }

    /// Adds an element: key bytes, an optional timeout, element flags.
    pub(super) fn push(
        &self,
        key: &[u8],
        timeout: Option<Duration>,
        flags: u32,
    ) -> Result<(), FirewallError> {
        // SAFETY: nftnl_set_elem_alloc returns an owned element or null (checked); libnftnl
        // copies `key.len()` bytes; nftnl_set_elem_add hands the element to the set, which
        // frees it with itself.
        unsafe {
            let elem = sys::nftnl_set_elem_alloc();
            if elem.is_null() {
                return Err(oom());
            }
            sys::nftnl_set_elem_set(
                elem,
                sys::NFTNL_SET_ELEM_KEY as u16,
                key.as_ptr().cast::<c_void>(),
                key.len() as u32,
            );
            if let Some(t) = timeout {
                let ms = t.as_millis().clamp(1000, u128::from(u64::MAX >> 1)) as u64;
                sys::nftnl_set_elem_set_u64(elem, sys::NFTNL_SET_ELEM_TIMEOUT as u16, ms);
            }
            if flags != 0 {
                sys::nftnl_set_elem_set_u32(elem, sys::NFTNL_SET_ELEM_FLAGS as u16, flags);
            }
            sys::nftnl_set_elem_add(self.0, elem);
        }
        Ok(())
    }
}

pub(super) fn oom() -> FirewallError {
    FirewallError::Kernel {
        op: "allocate a netlink object",
        source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    }
}

/// A NEWSET message.
pub(super) struct NewSet(pub(super) SetObj);

// SAFETY: `write` builds one message into a batch buffer that nftnl sizes for a full message.
unsafe impl NlMsg for NewSet {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: MsgType) {
        // SAFETY: see the impl; the set object is live.
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                NFT_MSG_NEWSET,
                self.0 .1,
                NLM_F_CREATE | NLM_F_ACK,
                seq,
            );
            sys::nftnl_set_nlmsg_build_payload(h, self.0 .0);
        }
    }
}

/// What an element message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ElemOp {
    /// Add; an element already there is left as it is (no NLM_F_EXCL).
    Ensure,
    /// Add; fails with EEXIST if present.
    Create,
    /// Delete; fails with ENOENT if absent. With no elements: flush the set.
    Delete,
}

/// One NEWSETELEM/DELSETELEM message carrying up to [`ELEMS_PER_MSG`] elements.
struct ElemsMsg {
    set: SetObj,
    op: ElemOp,
}

// SAFETY: `write` builds one message of at most ELEMS_PER_MSG small elements (a few KB) into a
// batch buffer with room for a full netlink message.
unsafe impl NlMsg for ElemsMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: MsgType) {
        let (kind, flags) = match self.op {
            ElemOp::Ensure => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK),
            ElemOp::Create => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK),
            ElemOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_ACK),
        };
        // SAFETY: see the impl; the set object is live.
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(buf.cast::<c_char>(), kind, self.set.1, flags, seq);
            sys::nftnl_set_elems_nlmsg_build_payload(h, self.set.0);
        }
    }
}

/// An element: key bytes, timeout, flags.
pub(super) type Elem = (Vec<u8>, Option<Duration>, u32);

/// Adds element messages for `elems` to `batch`, [`ELEMS_PER_MSG`] per message.
pub(super) fn add_elems(
    batch: &mut Batch,
    spec: &SetSpec,
    op: ElemOp,
    elems: &[Elem],
) -> Result<(), FirewallError> {
    for chunk in elems.chunks(ELEMS_PER_MSG) {
        let set = SetObj::new(spec)?;
        for (key, timeout, flags) in chunk {
            set.push(key, *timeout, *flags)?;
        }
        batch.add(&ElemsMsg { set, op }, MsgType::Add);
    }
    Ok(())
}

/// Empties a set (DELSETELEM without elements).
pub(super) fn flush_set(batch: &mut Batch, spec: &SetSpec) -> Result<(), FirewallError> {
    batch.add(
        &ElemsMsg {
            set: SetObj::new(spec)?,
            op: ElemOp::Delete,
        },
        MsgType::Add,
    );
    Ok(())
}

pub(super) fn mac_elems(macs: &[Mac]) -> Vec<Elem> {
    macs.iter().map(|m| (m.0.to_vec(), None, 0)).collect()
}

/// Starts counting the MACs of `entries` that are not counted yet: ensure-present in `up`
/// (and `down` with `egress`), which keeps an element already there with its counter.
pub(super) fn count(
    batch: &mut Batch,
    entries: &[(Mac, Duration)],
    egress: bool,
) -> Result<(), FirewallError> {
    let macs: Vec<Mac> = entries
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, _)| *m)
        .collect();
    add_elems(batch, &ruleset::UP, ElemOp::Ensure, &mac_elems(&macs))?;
    if egress {
        add_elems(batch, &ruleset::DOWN, ElemOp::Ensure, &mac_elems(&macs))?;
    }
    Ok(())
}

/// Interval elements of the walled garden for one family: a start element per range and an
/// interval-end element one past it (none when the range reaches the last address).
pub(super) fn garden_elems(garden: &[(IpAddr, u8)], v4: bool) -> Result<Vec<Elem>, FirewallError> {
    let key = |a: u128| {
        if v4 {
            (a as u32).to_be_bytes().to_vec()
        } else {
            a.to_be_bytes().to_vec()
        }
    };
    let mut out = Vec::new();
    for iv in ruleset::garden_intervals(garden, v4)? {
        out.push((key(iv.start), None, 0));
        if let Some(end) = iv.end {
            out.push((key(end), None, NFT_SET_ELEM_INTERVAL_END));
        }
    }
    Ok(out)
}

pub(super) fn allowed_elems(entries: &[(Mac, Duration)]) -> Vec<Elem> {
    entries
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, d)| (m.0.to_vec(), Some(*d), 0))
        .collect()
}

/// Last entry for a MAC wins.
pub(super) fn dedup(entries: &[(Mac, Duration)]) -> Vec<(Mac, Duration)> {
    let mut seen: HashMap<Mac, Duration> = HashMap::new();
    let mut order = Vec::new();
    for (m, d) in entries {
        if seen.insert(*m, *d).is_none() {
            order.push(*m);
        }
    }
    order
        .into_iter()
        .filter_map(|m| seen.get(&m).map(|d| (m, *d)))
        .collect()
}
