//! The kernel side of [`Firewall`]: the whole `inet wifipos` table (and `netdev wifipos`, the
//! download counting on the guest interface's egress hook) and every element change over
//! netlink (nftnl + mnl, with `nftnl-sys` for set flags, element timeouts, intervals and
//! dumps, which the safe API lacks), always in batches with every acknowledgement read back.
//!
//! Owns: turning the pure description of [`super::ruleset`] into netlink messages, and
//! reading the table back for [`Firewall::check`]. Reading the traffic counters and the netdev
//! table back is [`super::usage`]'s. Holds no socket between calls: each
//! operation opens one, so it works from whatever network namespace the calling thread is in.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use nftnl::expr::{Bitwise, Conntrack, IcmpCode, RejectionType, States, Verdict};
use nftnl::nftnl_sys as sys;
use nftnl::{
    Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, NlMsg, Policy, ProtoFamily, Rule, Table,
};

use super::exprs::{
    self, Cmp, DynsetUpdate, Load, LookupSet, MetaLoad, PayloadLoad, PayloadTo, Redir,
};
use super::ruleset::{
    self, Action, ChainSpec, Family, KeyType, Match, SetSpec, CHAIN_SPECS, NETDEV_SETS, SETS,
};
use super::{usage, Firewall, FirewallError, Mac, Ruleset, TableHealth, Usage};

const TABLE: &CStr = c"wifipos";
const ALLOWED: &CStr = c"allowed";
/// MACs per batch for `allow`/`remove` (up to six element operations each: the allowed set and
/// the two counting sets): well below what makes the kernel answer ENOBUFS even with default
/// socket buffers (tests/firewall.rs moves 10 000 in and out).
const CHUNK: usize = 4000;
/// Elements per netlink message: a few kilobytes, well inside one batch page.
const ELEMS_PER_MSG: usize = 128;

/// Netlink message types and flags used below (linux/netfilter/nf_tables.h, linux/netlink.h).
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
pub(super) const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 1;
pub(super) const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NFPROTO_INET: u16 = 1;
const NFPROTO_NETDEV: u16 = usage::NFPROTO_NETDEV as u16;
// nftnl's `Hook` names the inet hooks only; the netdev egress hook has the number of
// NF_INET_LOCAL_IN (`Hook::In`), which [`new_chain`] uses for it.
const _: () = assert!(libc::NF_NETDEV_EGRESS == libc::NF_INET_LOCAL_IN);
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_TIMEOUT: u32 = 0x10;
/// `flags dynamic`: the packet path may add elements.
const NFT_SET_EVAL: u32 = 0x20;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// What an install left behind, for [`Firewall::check`] to compare with.
#[derive(Debug, Clone, Copy)]
struct Built {
    handle: u64,
    rule_counts: [usize; 3],
    /// `netdev wifipos`'s handle and rules in its chain, when it was built.
    netdev: Option<(u64, usize)>,
}

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

/// The batch socket and the buffer size it was given.
struct BatchSocket {
    socket: mnl::Socket,
    size: usize,
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

/// An `nftnl_set` naming one of our sets, and the set's family (`NFPROTO_*`), freed on drop.
/// Used for creating the set and for element messages (the elements ride on it).
pub(super) struct SetObj(pub(super) *mut sys::nftnl_set, u16);

impl Drop for SetObj {
    fn drop(&mut self) {
        // SAFETY: the pointer came from nftnl_set_alloc (non-null) and is freed exactly once,
        // together with the elements it owns.
        unsafe { sys::nftnl_set_free(self.0) }
    }
}

impl SetObj {
    pub(super) fn new(spec: &SetSpec) -> Result<SetObj, FirewallError> {
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
    fn define(&self, spec: &SetSpec) -> Result<(), FirewallError> {
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

fn oom() -> FirewallError {
    FirewallError::Kernel {
        op: "allocate a netlink object",
        source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    }
}

/// A NEWSET message.
struct NewSet(SetObj);

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
enum ElemOp {
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
type Elem = (Vec<u8>, Option<Duration>, u32);

/// Adds element messages for `elems` to `batch`, [`ELEMS_PER_MSG`] per message.
fn add_elems(
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
fn flush_set(batch: &mut Batch, spec: &SetSpec) -> Result<(), FirewallError> {
    batch.add(
        &ElemsMsg {
            set: SetObj::new(spec)?,
            op: ElemOp::Delete,
        },
        MsgType::Add,
    );
    Ok(())
}

fn mac_elems(macs: &[Mac]) -> Vec<Elem> {
    macs.iter().map(|m| (m.0.to_vec(), None, 0)).collect()
}

/// Starts counting the MACs of `entries` that are not counted yet: ensure-present in `up`
/// (and `down` with `egress`), which keeps an element already there with its counter.
fn count(
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
fn garden_elems(garden: &[(IpAddr, u8)], v4: bool) -> Result<Vec<Elem>, FirewallError> {
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

/// Adds one rule's expressions.
fn add_match(rule: &mut Rule, m: &Match) -> Result<(), FirewallError> {
    let cmp = |eq: bool, data: &[u8]| Cmp {
        eq,
        data: data.to_vec(),
    };
    let lookup = |name: &str| -> Result<LookupSet, FirewallError> {
        let spec = SETS
            .iter()
            .chain(&NETDEV_SETS)
            .find(|s| s.name == name)
            .ok_or_else(|| FirewallError::Install(format!("no set {name}")))?;
        Ok(LookupSet {
            name: CString::new(name).map_err(|_| oom())?,
            id: spec.id,
            invert: false,
        })
    };
    let l4 = |rule: &mut Rule, proto: u8| {
        rule.add_expr(&MetaLoad(exprs::META_L4PROTO));
        rule.add_expr(&cmp(true, &[proto]));
    };
    let nfproto = |rule: &mut Rule, proto: u8| {
        rule.add_expr(&MetaLoad(exprs::META_NFPROTO));
        rule.add_expr(&cmp(true, &[proto]));
    };
    let ifname = |name: &str| {
        let mut b = name.as_bytes().to_vec();
        b.push(0);
        b
    };
    match m {
        Match::IifName { eq, name } => {
            rule.add_expr(&MetaLoad(exprs::META_IIFNAME));
            rule.add_expr(&cmp(*eq, &ifname(name)));
        }
        Match::OifName { eq, name } => {
            rule.add_expr(&MetaLoad(exprs::META_OIFNAME));
            rule.add_expr(&cmp(*eq, &ifname(name)));
        }
        Match::EtherSaddrIn(set) => {
            // `meta iiftype ether` (ARPHRD_ETHER, host byte order) guards the link-layer load.
            rule.add_expr(&MetaLoad(exprs::META_IIFTYPE));
            rule.add_expr(&cmp(true, &1u16.to_ne_bytes()));
            rule.add_expr(&PayloadLoad {
                base: exprs::LL_HEADER,
                offset: 6,
                len: 6,
            });
            rule.add_expr(&lookup(set)?);
        }
        Match::EtherDaddrIn(set) => {
            // In the netdev egress chain, where the kernel has set the frame's MAC header
            // before the hook. `meta iiftype ether` as nft itself puts it there (the egress
            // hook's input device is the device itself), so `nft list` reads it back as
            // `ether daddr @set`.
            rule.add_expr(&MetaLoad(exprs::META_IIFTYPE));
            rule.add_expr(&cmp(true, &1u16.to_ne_bytes()));
            rule.add_expr(&PayloadLoad {
                base: exprs::LL_HEADER,
                offset: 0,
                len: 6,
            });
            rule.add_expr(&lookup(set)?);
        }
        Match::Ip4DaddrIn(set) => {
            nfproto(rule, 2);
            rule.add_expr(&PayloadLoad {
                base: exprs::NETWORK_HEADER,
                offset: 16,
                len: 4,
            });
            rule.add_expr(&lookup(set)?);
        }
        Match::Ip6DaddrIn(set) => {
            nfproto(rule, 10);
            rule.add_expr(&PayloadLoad {
                base: exprs::NETWORK_HEADER,
                offset: 24,
                len: 16,
            });
            rule.add_expr(&lookup(set)?);
        }
        Match::Tcp => l4(rule, ruleset::IPPROTO_TCP),
        Match::TcpDport(p) => {
            rule.add_expr(&PayloadLoad {
                base: exprs::TRANSPORT_HEADER,
                offset: 2,
                len: 2,
            });
            rule.add_expr(&cmp(true, &p.to_be_bytes()));
        }
        Match::UdpDport(p) => {
            l4(rule, ruleset::IPPROTO_UDP);
            rule.add_expr(&PayloadLoad {
                base: exprs::TRANSPORT_HEADER,
                offset: 2,
                len: 2,
            });
            rule.add_expr(&cmp(true, &p.to_be_bytes()));
        }
        Match::EstablishedRelated => {
            rule.add_expr(&Conntrack::State);
            let mask = (States::ESTABLISHED | States::RELATED).bits();
            rule.add_expr(&Bitwise::new(mask, 0u32));
            rule.add_expr(&cmp(false, &0u32.to_ne_bytes()));
        }
        Match::IcmpType(t) | Match::Icmpv6Type(t) => {
            let proto = if matches!(m, Match::IcmpType(_)) {
                ruleset::IPPROTO_ICMP
            } else {
                ruleset::IPPROTO_ICMPV6
            };
            l4(rule, proto);
            rule.add_expr(&PayloadLoad {
                base: exprs::TRANSPORT_HEADER,
                offset: 0,
                len: 1,
            });
            rule.add_expr(&cmp(true, &[*t]));
        }
    }
    Ok(())
}

fn add_action(rule: &mut Rule, a: Action) {
    match a {
        Action::Continue => {}
        Action::Accept => rule.add_expr(&Verdict::Accept),
        Action::Drop => rule.add_expr(&Verdict::Drop),
        Action::Return => rule.add_expr(&Verdict::Return),
        Action::RejectTcpReset => rule.add_expr(&Verdict::Reject(RejectionType::TcpRst)),
        Action::RejectAdminProhibited => rule.add_expr(&Verdict::Reject(RejectionType::Icmp(
            IcmpCode::AdminProhibited,
        ))),
        Action::Redirect(port) => {
            rule.add_expr(&Load(port.to_be_bytes().to_vec()));
            rule.add_expr(&Redir);
        }
        Action::RecordSource(set) => {
            let v6 = set.key == KeyType::Ipv6Ether;
            // `meta nfproto` and `meta iiftype ether` guard the loads, as nft adds them.
            rule.add_expr(&MetaLoad(exprs::META_NFPROTO));
            rule.add_expr(&Cmp {
                eq: true,
                data: vec![if v6 { 10 } else { 2 }],
            });
            rule.add_expr(&MetaLoad(exprs::META_IIFTYPE));
            rule.add_expr(&Cmp {
                eq: true,
                data: 1u16.to_ne_bytes().to_vec(),
            });
            let (offset, len) = if v6 { (8, 16) } else { (12, 4) };
            let words = len / 4;
            let load = |base, offset, len, reg32| PayloadTo {
                base,
                offset,
                len,
                reg32,
            };
            rule.add_expr(&load(exprs::NETWORK_HEADER, offset, len, 0));
            rule.add_expr(&load(exprs::LL_HEADER, 6, 6, words));
            rule.add_expr(&DynsetUpdate {
                name: CString::new(set.name).unwrap_or_default(),
                id: set.id,
            });
        }
    }
}

fn new_chain<'a>(spec: &ChainSpec, table: &'a Table) -> Chain<'a> {
    let mut c = Chain::new(CString::new(spec.name).unwrap_or_default(), table);
    let hook = match spec.hook {
        ruleset::Hook::Prerouting => Hook::PreRouting,
        ruleset::Hook::Forward => Hook::Forward,
        ruleset::Hook::Input => Hook::In,
        // NF_NETDEV_EGRESS (same number, asserted at the top).
        ruleset::Hook::Egress => Hook::In,
    };
    c.set_hook(hook, spec.priority);
    c.set_type(if spec.nat {
        ChainType::Nat
    } else {
        ChainType::Filter
    });
    c.set_policy(Policy::Accept);
    c
}

fn allowed_elems(entries: &[(Mac, Duration)]) -> Vec<Elem> {
    entries
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, d)| (m.0.to_vec(), Some(*d), 0))
        .collect()
}

/// The install batch: create-or-clear the table (add, delete, add), the sets with their
/// elements (paid devices with their time left, and in `up` to be counted), the chains and
/// their rules; with `egress`, the same for `netdev wifipos` (download counting). All or
/// nothing. Also says how many rules the netdev chain got.
fn install_batch(
    rules: &Ruleset,
    allowed: &[(Mac, Duration)],
    egress: bool,
) -> Result<(FinalizedBatch, [usize; 3], usize), FirewallError> {
    let plan = ruleset::rules(rules)?;
    let allowed = dedup(allowed);
    let counted: Vec<Mac> = allowed
        .iter()
        .filter(|(_, d)| d.as_secs() >= 1)
        .map(|(m, _)| *m)
        .collect();
    let g4 = garden_elems(&rules.garden, true)?;
    let g6 = garden_elems(&rules.garden, false)?;
    let table = Table::new(TABLE, ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);
    for spec in &SETS {
        let set = SetObj::new(spec)?;
        set.define(spec)?;
        batch.add(&NewSet(set), MsgType::Add);
    }
    add_elems(
        &mut batch,
        &ruleset::ALLOWED,
        ElemOp::Create,
        &allowed_elems(&allowed),
    )?;
    add_elems(
        &mut batch,
        &ruleset::UP,
        ElemOp::Create,
        &mac_elems(&counted),
    )?;
    add_elems(
        &mut batch,
        &ruleset::TRUSTED,
        ElemOp::Ensure,
        &mac_elems(&rules.trusted),
    )?;
    add_elems(
        &mut batch,
        &ruleset::BLOCKED,
        ElemOp::Ensure,
        &mac_elems(&rules.blocked),
    )?;
    add_elems(&mut batch, &ruleset::GARDEN4, ElemOp::Create, &g4)?;
    add_elems(&mut batch, &ruleset::GARDEN6, ElemOp::Create, &g6)?;
    for spec in &CHAIN_SPECS {
        let chain = new_chain(spec, &table);
        batch.add(&chain, MsgType::Add);
        for r in plan.iter().filter(|r| r.chain == spec.name) {
            let mut rule = Rule::new(&chain);
            for m in &r.matches {
                add_match(&mut rule, m)?;
            }
            add_action(&mut rule, r.action);
            batch.add(&rule, MsgType::Add);
        }
    }
    let mut egress_rules = 0;
    if egress {
        let table = Table::new(TABLE, ProtoFamily::NetDev);
        batch.add(&table, MsgType::Add);
        batch.add(&table, MsgType::Del);
        batch.add(&table, MsgType::Add);
        for spec in &NETDEV_SETS {
            let set = SetObj::new(spec)?;
            set.define(spec)?;
            batch.add(&NewSet(set), MsgType::Add);
        }
        add_elems(
            &mut batch,
            &ruleset::DOWN,
            ElemOp::Create,
            &mac_elems(&counted),
        )?;
        let mut chain = new_chain(&ruleset::DOWN_CHAIN, &table);
        chain.set_device(
            CString::new(rules.guest_iface.as_str())
                .map_err(|_| FirewallError::BadInterface(rules.guest_iface.clone()))?,
        );
        batch.add(&chain, MsgType::Add);
        for r in ruleset::egress_rules() {
            let mut rule = Rule::new(&chain);
            for m in &r.matches {
                add_match(&mut rule, m)?;
            }
            add_action(&mut rule, r.action);
            batch.add(&rule, MsgType::Add);
            egress_rules += 1;
        }
    }
    Ok((batch.finalize(), ruleset::rule_counts(&plan), egress_rules))
}

/// Last entry for a MAC wins.
fn dedup(entries: &[(Mac, Duration)]) -> Vec<(Mac, Duration)> {
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

/// Gives a netfilter socket buffers big enough for `bytes` of batch and its acknowledgements
/// (best effort: without CAP_NET_ADMIN the defaults stay).
fn size_buffers(socket: &mnl::Socket, bytes: usize) -> usize {
    let size = (bytes * 2).clamp(1 << 20, 64 << 20);
    let c_size = size as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
        // SAFETY: a valid socket fd and a pointer to a live c_int of the stated size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&c_size as *const libc::c_int).cast::<c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    size
}

/// Discards replies an earlier batch left unread (the kernel answers a batch within `send`, so
/// after an error the rest of its acknowledgements may still be queued).
fn drain(socket: &mnl::Socket) {
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: a valid socket fd and a live buffer of the stated length; MSG_DONTWAIT makes
        // it return at once when nothing is queued.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
    }
}

/// Sends a batch on the firewall's batch socket (opened on first use, kept open) and reads
/// every acknowledgement, so a kernel error is an error naming `op`.
fn send_and_process(
    held: &mut Option<BatchSocket>,
    batch: &FinalizedBatch,
    op: &'static str,
) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    // nftnl splits a big batch into pages; the kernel needs the batch (BEGIN .. END) in one
    // datagram, or it refuses the part without END (EINVAL). Send the pages as one.
    let whole: Vec<u8> = batch.iter().flat_map(|page| page.iter().copied()).collect();
    if held.is_none() {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
        let size = size_buffers(&socket, whole.len());
        *held = Some(BatchSocket { socket, size });
    }
    let b = held
        .as_mut()
        .ok_or_else(|| err(std::io::Error::other("no netlink socket")))?;
    if whole.len() * 2 > b.size {
        b.size = size_buffers(&b.socket, whole.len());
    }
    drain(&b.socket);
    let socket = &b.socket;
    let portid = socket.portid();
    if socket.send(&whole).map_err(err)? < whole.len() {
        return Err(err(std::io::Error::other(
            "the kernel took only part of the batch",
        )));
    }
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..]).map_err(err)? {
            let message = message.map_err(err)?;
            let seq = expected.next().unwrap_or_default();
            mnl::cb_run(message, seq, portid).map_err(err)?;
        }
    }
    Ok(())
}

/// A 4-byte aligned buffer, as netlink headers need.
struct NlBuf(Vec<u32>);

impl NlBuf {
    fn new() -> NlBuf {
        NlBuf(vec![0; nftnl::nft_nlmsg_maxsize() as usize / 4])
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 4;
        // SAFETY: a u32 buffer viewed as bytes: same allocation, u8 has no alignment needs, and
        // the borrow of `self` keeps it alive and unaliased.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Sends one request and hands each reply message (aligned) to `each` until the kernel says
/// done, acknowledges, or reports an error.
pub(super) fn request(
    op: &'static str,
    build: impl FnOnce(*mut c_char, u32) -> usize,
    mut each: impl FnMut(*const c_void),
) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
    let seq = std::process::id();
    let mut buf = NlBuf::new();
    let len = build(buf.bytes().as_mut_ptr().cast::<c_char>(), seq);
    socket.send(&buf.bytes()[..len]).map_err(err)?;
    loop {
        let n = socket.recv_raw(buf.bytes()).map_err(err)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off + 16 <= n {
            let b = &buf.bytes()[off..n];
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind = u16::from_ne_bytes([b[4], b[5]]);
            if len < 16 || len > b.len() {
                return Ok(());
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(err(std::io::Error::from_raw_os_error(-code)))
                    };
                }
                _ => each(buf.bytes()[off..].as_ptr().cast::<c_void>()),
            }
            off += (len + 3) & !3;
        }
    }
}

/// Allocates an nftnl object for our table, frees it on drop.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*const T),
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the matching nftnl_*_alloc and is freed exactly once.
        unsafe { (self.free)(self.ptr) }
    }
}

fn alloc_set() -> Result<Owned<sys::nftnl_set>, FirewallError> {
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
        Ok(Owned {
            ptr: s,
            free: sys::nftnl_set_free,
        })
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
fn table_handle() -> Result<Option<u64>, FirewallError> {
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
struct Listing {
    chains: Vec<String>,
    rules: HashMap<String, usize>,
    sets: HashMap<String, u32>,
}

fn listing() -> Result<Listing, FirewallError> {
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
                        == super::TABLE
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
                        == super::TABLE
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
                    && text(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16)) == super::TABLE
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
fn differences(l: &Listing, built: Option<&Built>) -> Option<String> {
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
        request(
            "list the allowed set",
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
                    sys::nftnl_set_elems_nlmsg_build_payload(nlh, set.ptr);
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
                                let key = sys::nftnl_set_elem_get(
                                    elem,
                                    sys::NFTNL_SET_ELEM_KEY as u16,
                                    &mut len,
                                );
                                let left = sys::nftnl_set_elem_get_u64(
                                    elem,
                                    sys::NFTNL_SET_ELEM_EXPIRATION as u16,
                                );
                                if !key.is_null() && len >= 6 {
                                    let k = std::slice::from_raw_parts(key.cast::<u8>(), 6);
                                    let mut mac = [0u8; 6];
                                    mac.copy_from_slice(k);
                                    out.push((Mac(mac), Duration::from_millis(left)));
                                }
                                elem = sys::nftnl_set_elems_iter_next(iter);
                            }
                            sys::nftnl_set_elems_iter_destroy(iter);
                        }
                    }
                    sys::nftnl_set_free(parsed);
                }
            },
        )?;
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
