//! Reading our table back from the kernel: its handle, its chains, rules per chain and sets
//! with their flags, and the elements of one set; and comparing that listing with what an
//! install built, for [`crate::firewall::Firewall::check`].
//!
//! Owns: the GET and dump requests and the parsing of their replies (`unsafe` nftnl FFI, each
//! block with its SAFETY line), used also by [`crate::firewall::sources`]. Does not own the
//! netdev table or the traffic counters ([`crate::firewall::usage`]).

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};

use nftnl::nftnl_sys as sys;

use super::proto::{
    NFPROTO_INET, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
    NFT_MSG_GETTABLE, NFT_SET_INTERVAL, NFT_SET_TIMEOUT, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
    TABLE,
};
use super::sets::SetObj;
use super::socket::request;
use crate::firewall::ruleset::{CHAIN_SPECS, SETS};
use crate::firewall::FirewallError;

const ALLOWED: &CStr = c"allowed";

/// What an install left behind, for [`crate::firewall::Firewall::check`] to compare with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Built {
    pub(super) handle: u64,
    pub(super) rule_counts: [usize; 3],
    /// `netdev wifipos`'s handle and rules in its chain, when it was built.
    pub(super) netdev: Option<(u64, usize)>,
}

/// The allowed set of our table, for listing its elements (freed on drop, as every
/// [`SetObj`]).
pub(super) fn alloc_set() -> Result<SetObj, FirewallError> {
    // SAFETY: alloc returns an owned object or null (checked); the strings are static C
    // strings that libnftnl copies.
    unsafe {
        let s = sys::nftnl_set_alloc();
        if s.is_null() {
            return Err(FirewallError::Install("out of memory".into()));
        }
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, ALLOWED.as_ptr());
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, u32::from(NFPROTO_INET));
        Ok(SetObj(s, NFPROTO_INET))
    }
}

/// Sends one GET request (`flags`: dump or ack) whose payload `fill` writes, handing each
/// reply message to `each`.
fn get(
    op: &'static str,
    kind: u16,
    flags: u16,
    fill: impl FnOnce(*mut libc::nlmsghdr),
    each: impl FnMut(*const c_void),
) -> Result<(), FirewallError> {
    request(
        op,
        |buf, seq| {
            // SAFETY: `buf` is an aligned buffer of nft_nlmsg_maxsize bytes; one header plus a
            // table/chain/set name payload fits in it.
            unsafe {
                let nlh =
                    sys::nftnl_nlmsg_build_hdr(buf, kind, NFPROTO_INET, NLM_F_REQUEST | flags, seq);
                fill(nlh);
                (*nlh).nlmsg_len as usize
            }
        },
        each,
    )
}

/// Dumps the elements of the set `set` names (GETSETELEM), handing each element's key (`None`
/// when it came without one) and the milliseconds it has left to `each`.
pub(in crate::firewall) fn dump_elems(
    op: &'static str,
    set: &SetObj,
    mut each: impl FnMut(Option<&[u8]>, u64),
) -> Result<(), FirewallError> {
    request(
        op,
        |buf, seq| {
            // SAFETY: `buf` is an aligned buffer of nft_nlmsg_maxsize bytes; the header and
            // payload of a GETSETELEM request for one named set fit in it.
            unsafe {
                let nlh = sys::nftnl_nlmsg_build_hdr(
                    buf,
                    NFT_MSG_GETSETELEM,
                    NFPROTO_INET,
                    NLM_F_REQUEST | NLM_F_DUMP,
                    seq,
                );
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, set.0);
                (*nlh).nlmsg_len as usize
            }
        },
        |msg| {
            // SAFETY: `msg` points at one complete, aligned netlink message from the kernel
            // inside the receive buffer; the parsed set and its iterator are freed here;
            // element keys are read with the length libnftnl reports.
            unsafe {
                let parsed = sys::nftnl_set_alloc();
                if parsed.is_null() {
                    return;
                }
                if sys::nftnl_set_elems_nlmsg_parse(msg.cast(), parsed) >= 0 {
                    let iter = sys::nftnl_set_elems_iter_create(parsed);
                    if !iter.is_null() {
                        let mut elem = sys::nftnl_set_elems_iter_next(iter);
                        while !elem.is_null() {
                            let mut len = 0u32;
                            let key: *const c_void = sys::nftnl_set_elem_get(
                                elem,
                                sys::NFTNL_SET_ELEM_KEY as u16,
                                &mut len,
                            );
                            let left = sys::nftnl_set_elem_get_u64(
                                elem,
                                sys::NFTNL_SET_ELEM_EXPIRATION as u16,
                            );
                            let key = (!key.is_null()).then(|| {
                                std::slice::from_raw_parts(key.cast::<u8>(), len as usize)
                            });
                            each(key, left);
                            elem = sys::nftnl_set_elems_iter_next(iter);
                        }
                        sys::nftnl_set_elems_iter_destroy(iter);
                    }
                }
                sys::nftnl_set_free(parsed);
            }
        },
    )
}

/// Reads a string attribute that libnftnl returns (null when absent).
fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null strings from libnftnl getters are NUL-terminated and live as long as
    // the object they came from, which outlives this call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Our table's handle, or `None` when there is no such table.
pub(super) fn table_handle() -> Result<Option<u64>, FirewallError> {
    let mut handle = None;
    let r = get(
        "look up the table inet wifipos",
        NFT_MSG_GETTABLE,
        NLM_F_ACK,
        |nlh| {
            // SAFETY: `nlh` is the request header being built; the table object is freed
            // after its payload is copied into the message.
            unsafe {
                let t = sys::nftnl_table_alloc();
                if !t.is_null() {
                    sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, TABLE.as_ptr());
                    sys::nftnl_table_nlmsg_build_payload(nlh, t);
                    sys::nftnl_table_free(t);
                }
            }
        },
        |msg| {
            // SAFETY: `msg` is one complete, aligned netlink message from the kernel; the
            // parsed table is freed here.
            unsafe {
                let t = sys::nftnl_table_alloc();
                if !t.is_null() {
                    if sys::nftnl_table_nlmsg_parse(msg.cast(), t) >= 0 {
                        handle = Some(sys::nftnl_table_get_u64(t, sys::NFTNL_TABLE_HANDLE as u16));
                    }
                    sys::nftnl_table_free(t);
                }
            }
        },
    );
    match r {
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(handle),
    }
}

/// What the kernel holds in our table: chain names, rules per chain, sets and their flags.
#[derive(Debug, Default)]
pub(super) struct Listing {
    chains: Vec<String>,
    rules: HashMap<String, usize>,
    sets: HashMap<String, u32>,
}

pub(super) fn listing() -> Result<Listing, FirewallError> {
    let mut l = Listing::default();
    get(
        "list the chains",
        NFT_MSG_GETCHAIN,
        NLM_F_DUMP,
        |_| {},
        |msg| {
            // SAFETY: as in table_handle; the chain object is freed here.
            unsafe {
                let c = sys::nftnl_chain_alloc();
                if c.is_null() {
                    return;
                }
                if sys::nftnl_chain_nlmsg_parse(msg.cast(), c) >= 0
                    && text(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16))
                        == crate::firewall::TABLE
                {
                    l.chains.push(text(sys::nftnl_chain_get_str(
                        c,
                        sys::NFTNL_CHAIN_NAME as u16,
                    )));
                }
                sys::nftnl_chain_free(c);
            }
        },
    )?;
    get(
        "list the rules",
        NFT_MSG_GETRULE,
        NLM_F_DUMP,
        |nlh| {
            // SAFETY: as in table_handle; the rule object only names the table to dump.
            unsafe {
                let r = sys::nftnl_rule_alloc();
                if !r.is_null() {
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, TABLE.as_ptr());
                    sys::nftnl_rule_nlmsg_build_payload(nlh, r);
                    sys::nftnl_rule_free(r);
                }
            }
        },
        |msg| {
            // SAFETY: as in table_handle; the rule object is freed here.
            unsafe {
                let r = sys::nftnl_rule_alloc();
                if r.is_null() {
                    return;
                }
                if sys::nftnl_rule_nlmsg_parse(msg.cast(), r) >= 0
                    && text(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16))
                        == crate::firewall::TABLE
                {
                    let chain = text(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16));
                    *l.rules.entry(chain).or_default() += 1;
                }
                sys::nftnl_rule_free(r);
            }
        },
    )?;
    get(
        "list the sets",
        NFT_MSG_GETSET,
        NLM_F_DUMP,
        |nlh| {
            // SAFETY: as in table_handle; the set object only names the table to dump.
            unsafe {
                let s = sys::nftnl_set_alloc();
                if !s.is_null() {
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, TABLE.as_ptr());
                    sys::nftnl_set_nlmsg_build_payload(nlh, s);
                    sys::nftnl_set_free(s);
                }
            }
        },
        |msg| {
            // SAFETY: as in table_handle; the set object is freed here.
            unsafe {
                let s = sys::nftnl_set_alloc();
                if s.is_null() {
                    return;
                }
                if sys::nftnl_set_nlmsg_parse(msg.cast(), s) >= 0
                    && text(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16))
                        == crate::firewall::TABLE
                {
                    let name = text(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16));
                    let flags = sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FLAGS as u16);
                    l.sets.insert(name, flags);
                }
                sys::nftnl_set_free(s);
            }
        },
    )?;
    Ok(l)
}

/// Compares what the kernel holds with what we built; `None` when it matches.
pub(super) fn differences(l: &Listing, built: Option<&Built>) -> Option<String> {
    for spec in &SETS {
        match l.sets.get(spec.name) {
            None => return Some(format!("set {} is missing", spec.name)),
            Some(flags) => {
                let want_timeout = spec.timeout;
                if (flags & NFT_SET_TIMEOUT != 0) != want_timeout
                    || (flags & NFT_SET_INTERVAL != 0) != spec.interval
                {
                    return Some(format!("set {} has other flags", spec.name));
                }
            }
        }
    }
    if l.sets.len() != SETS.len() {
        return Some(format!(
            "the table has {} sets, not {}",
            l.sets.len(),
            SETS.len()
        ));
    }
    for (i, spec) in CHAIN_SPECS.iter().enumerate() {
        if !l.chains.iter().any(|c| c == spec.name) {
            return Some(format!("chain {} is missing", spec.name));
        }
        let have = l.rules.get(spec.name).copied().unwrap_or(0);
        let want = built.map(|b| b.rule_counts[i]);
        if want.is_some_and(|w| w != have) || (want.is_none() && have == 0) {
            return Some(format!(
                "chain {} has {have} rules, not {}",
                spec.name,
                want.unwrap_or(1)
            ));
        }
    }
    if l.chains.len() != CHAIN_SPECS.len() {
        return Some(format!(
            "the table has {} chains, not {}",
            l.chains.len(),
            CHAIN_SPECS.len()
        ));
    }
    None
}
