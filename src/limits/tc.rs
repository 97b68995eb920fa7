//! The kernel side of [`Limiter`]: HTB traffic shaping built over rtnetlink (no `tc` process).
//!
//! Download: an HTB root qdisc (handle `1:`) on the guest interface; a limited device gets class
//! `1:N` (rate = ceil = its limit) with a pfifo leaf, and a u32 filter on its destination MAC.
//! Unclassified packets (every unlimited device) bypass the classes (HTB's direct queue).
//! Upload: the guest interface's `clsact` ingress redirects (mirred) the packets of each
//! upload-limited source MAC to the ifb device [`IFB`], whose HTB root shapes them the same
//! way; unlimited devices are not redirected at all. Every u32 filter list hashes on the
//! MAC's last byte first (256 buckets), so a packet meets a few filters, not one per device.
//!
//! Owns: the message bytes (pure, unit-tested) and the [`TcLimiter`] state (which device has
//! which class). Holds no socket between calls: each operation opens one, so it works from
//! whatever network namespace the calling thread is in.

use std::collections::BTreeMap;
use std::io;

use super::{
    burst_bytes, kbit_to_bytes, validate, xmit_ticks, Classes, LimitError, Limiter, Rates,
};
use crate::mac::Mac;
use crate::nl;

/// The ifb device that carries the guests' upload through its shaper.
pub const IFB: &str = "wifipos-up";
/// Unclassified (unlimited) packets HTB queues directly; a bridge has txqueuelen 0, for which
/// HTB would otherwise allow only 2 packets and drop the rest.
const DIRECT_QLEN: u32 = 1000;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTCLASS: u16 = 40;
const RTM_DELTCLASS: u16 = 41;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFF_UP: u32 = 1;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_DIRECT_QLEN: u16 = 5;
const TCA_U32_CLASSID: u16 = 1;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TC_U32_TERMINAL: u8 = 1;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const TC_H_ROOT: u32 = 0xFFFF_FFFF;
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const TC_H_INGRESS_PARENT: u32 = 0xFFFF_FFF2;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
const HTB_ROOT: u32 = 0x0001_0000;
/// u32's root table (`800:`): holds only [`LINK_NODE`], which hashes on the MAC's last byte
/// into [`HASH_TABLE`] (`1:`, 256 buckets), where each device's filter sits. A packet is
/// compared with the filters of one bucket, not with every limited device.
const U32_ROOT: u32 = 0x8000_0000;
const LINK_NODE: u32 = U32_ROOT | 1;
const HASH_TABLE: u32 = 0x0010_0000;
const TCA_U32_HASH: u16 = 2;
const TCA_U32_LINK: u16 = 3;
const TCA_U32_DIVISOR: u16 = 4;
const ETH_P_ALL: u16 = 3;
const FILTER_PRIO: u32 = 1;

/// Which MAC field a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Download: `ether daddr`.
    Dst,
    /// Upload: `ether saddr`.
    Src,
}

/// What a matching filter does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Put the packet in this HTB class (minor number under `1:`).
    Class(u16),
    /// Redirect it to the egress of this interface (the ifb).
    Redirect(u32),
}

fn nest(buf: &mut Vec<u8>, kind: u16, build: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    build(&mut inner);
    nl::push_attr(buf, kind | NLA_F_NESTED, &inner);
}

fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&[0, 0, 0, 0]); // family (AF_UNSPEC), padding
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b.extend_from_slice(&handle.to_ne_bytes());
    b.extend_from_slice(&parent.to_ne_bytes());
    b.extend_from_slice(&info.to_ne_bytes());
    b
}

fn flags_create() -> u16 {
    nl::NLM_F_REQUEST | nl::NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
}

fn flags_plain() -> u16 {
    nl::NLM_F_REQUEST | nl::NLM_F_ACK
}

/// `ip link add IFB type ifb up`.
pub fn new_ifb() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0, 0, 0, 0]); // family, pad, type
    b.extend_from_slice(&0i32.to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    nl::push_attr(&mut b, IFLA_IFNAME, format!("{IFB}\0").as_bytes());
    nest(&mut b, IFLA_LINKINFO, |l| {
        nl::push_attr(l, IFLA_INFO_KIND, b"ifb");
    });
    nl::message(RTM_NEWLINK, flags_create(), 1, &b)
}

/// `ip link del IFB`.
pub fn del_ifb() -> Vec<u8> {
    let mut b = vec![0u8; 16];
    nl::push_attr(&mut b, IFLA_IFNAME, format!("{IFB}\0").as_bytes());
    nl::message(RTM_DELLINK, flags_plain(), 1, &b)
}

/// `tc qdisc add dev IF root handle 1: htb default 0 direct_qlen 1000`.
pub fn new_htb_root(ifindex: u32) -> Vec<u8> {
    let mut b = tcmsg(ifindex, HTB_ROOT, TC_H_ROOT, 0);
    nl::push_attr(&mut b, TCA_KIND, b"htb\0");
    nest(&mut b, TCA_OPTIONS, |o| {
        // struct tc_htb_glob: version 3, rate2quantum 10, defcls 0 (unclassified = direct),
        // debug 0, direct_pkts 0.
        let mut glob = Vec::new();
        for v in [3u32, 10, 0, 0, 0] {
            glob.extend_from_slice(&v.to_ne_bytes());
        }
        nl::push_attr(o, TCA_HTB_INIT, &glob);
        nl::push_attr(o, TCA_HTB_DIRECT_QLEN, &DIRECT_QLEN.to_ne_bytes());
    });
    nl::message(RTM_NEWQDISC, flags_create(), 1, &b)
}

/// `tc qdisc add dev IF clsact`.
pub fn new_clsact(ifindex: u32) -> Vec<u8> {
    let mut b = tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    nl::push_attr(&mut b, TCA_KIND, b"clsact\0");
    nl::message(RTM_NEWQDISC, flags_create(), 1, &b)
}

/// `tc qdisc del dev IF root` (or `clsact`).
pub fn del_qdisc(ifindex: u32, clsact: bool) -> Vec<u8> {
    let b = if clsact {
        tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0)
    } else {
        tcmsg(ifindex, 0, TC_H_ROOT, 0)
    };
    nl::message(RTM_DELQDISC, flags_plain(), 1, &b)
}

/// struct tc_ratespec for `rate_bytes`.
fn ratespec(rate_bytes: u32) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = TC_LINKLAYER_ETHERNET;
    r[4..6].copy_from_slice(&(-1i16).to_ne_bytes()); // cell_align, as tc sets it
    r[8..12].copy_from_slice(&rate_bytes.to_ne_bytes());
    r
}

/// `tc class replace dev IF parent 1: classid 1:N htb rate R ceil R burst B cburst B`.
pub fn set_class(ifindex: u32, minor: u16, kbit: u32) -> Vec<u8> {
    let rate = kbit_to_bytes(kbit);
    let ticks = xmit_ticks(rate, burst_bytes(rate));
    let mut opt = Vec::with_capacity(44);
    opt.extend_from_slice(&ratespec(rate));
    opt.extend_from_slice(&ratespec(rate));
    let quantum = (rate / 10).clamp(1514, 200_000);
    for v in [ticks, ticks, quantum, 0, 0] {
        opt.extend_from_slice(&v.to_ne_bytes());
    }
    let mut b = tcmsg(ifindex, HTB_ROOT | u32::from(minor), HTB_ROOT, 0);
    nl::push_attr(&mut b, TCA_KIND, b"htb\0");
    nest(&mut b, TCA_OPTIONS, |o| {
        nl::push_attr(o, TCA_HTB_PARMS, &opt)
    });
    let flags = nl::NLM_F_REQUEST | nl::NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    nl::message(RTM_NEWTCLASS, flags, 1, &b)
}

/// `tc class del dev IF classid 1:N` (its leaf queue goes with it).
pub fn del_class(ifindex: u32, minor: u16) -> Vec<u8> {
    let b = tcmsg(ifindex, HTB_ROOT | u32::from(minor), HTB_ROOT, 0);
    nl::message(RTM_DELTCLASS, flags_plain(), 1, &b)
}

/// `tc qdisc add dev IF parent 1:N handle N: pfifo limit P`, P from [`super::queue_packets`].
pub fn new_leaf(ifindex: u32, minor: u16, kbit: u32) -> Vec<u8> {
    let mut b = tcmsg(
        ifindex,
        u32::from(minor) << 16,
        HTB_ROOT | u32::from(minor),
        0,
    );
    nl::push_attr(&mut b, TCA_KIND, b"pfifo\0");
    nl::push_attr(
        &mut b,
        TCA_OPTIONS,
        &super::queue_packets(kbit_to_bytes(kbit)).to_ne_bytes(),
    );
    nl::message(RTM_NEWQDISC, flags_create(), 1, &b)
}

/// The u32 selector matching one MAC field: two 32-bit keys, at offsets relative to the
/// network header (the Ethernet header sits at -14), aligned as `tc ... match ether` does.
pub fn mac_selector(mac: Mac, field: Field, terminal: bool) -> Vec<u8> {
    let m = mac.0;
    // (mask, value, offset): masks and values in network byte order.
    let keys: [([u8; 4], [u8; 4], i32); 2] = match field {
        // Destination: bytes -14..-9.
        Field::Dst => [
            ([0, 0, 0xff, 0xff], [0, 0, m[0], m[1]], -16),
            ([0xff; 4], [m[2], m[3], m[4], m[5]], -12),
        ],
        // Source: bytes -8..-3.
        Field::Src => [
            ([0xff; 4], [m[0], m[1], m[2], m[3]], -8),
            ([0xff, 0xff, 0, 0], [m[4], m[5], 0, 0], -4),
        ],
    };
    let mut s = vec![if terminal { TC_U32_TERMINAL } else { 0 }, 0, 2, 0];
    s.extend_from_slice(&[0; 12]); // offmask, off, offoff, hoff, hmask
    for (mask, val, off) in keys {
        s.extend_from_slice(&mask);
        s.extend_from_slice(&val);
        s.extend_from_slice(&off.to_ne_bytes());
        s.extend_from_slice(&0i32.to_ne_bytes());
    }
    s
}

fn filter_head(ifindex: u32, parent: u32, handle: u32) -> Vec<u8> {
    let info = (FILTER_PRIO << 16) | u32::from(ETH_P_ALL.to_be());
    tcmsg(ifindex, handle, parent, info)
}

/// The bucket of [`HASH_TABLE`] a MAC's filters go in (`1:HH:`).
fn bucket(mac: Mac) -> u32 {
    HASH_TABLE | (u32::from(mac.0[5]) << 12)
}

/// A device's filter handle: its bucket and its class number as node (`1:HH:N`).
pub fn filter_handle(mac: Mac, node: u16) -> u32 {
    bucket(mac) | u32::from(node)
}

/// The hash table and the root filter that hashes into it on the last byte of the MAC
/// field: `tc filter add ... handle 1: u32 divisor 256`, then `... handle 800::1 u32 match
/// u32 0 0 hashkey mask M at O link 1:`.
pub fn new_hash(ifindex: u32, parent: u32, field: Field) -> [Vec<u8>; 2] {
    let mut t = filter_head(ifindex, parent, HASH_TABLE);
    nl::push_attr(&mut t, TCA_KIND, b"u32\0");
    nest(&mut t, TCA_OPTIONS, |o| {
        nl::push_attr(o, TCA_U32_DIVISOR, &256u32.to_ne_bytes())
    });
    // The last MAC byte within an aligned 32-bit word: dst byte -9 is the low byte of the
    // word at -12, src byte -3 the second byte of the word at -4.
    let (hmask, hoff): ([u8; 4], i16) = match field {
        Field::Dst => ([0, 0, 0, 0xff], -12),
        Field::Src => ([0, 0xff, 0, 0], -4),
    };
    let mut sel = vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    sel.extend_from_slice(&hoff.to_ne_bytes());
    sel.extend_from_slice(&hmask);
    sel.extend_from_slice(&[0; 16]); // one key matching everything
    let mut l = filter_head(ifindex, parent, LINK_NODE);
    nl::push_attr(&mut l, TCA_KIND, b"u32\0");
    nest(&mut l, TCA_OPTIONS, |o| {
        nl::push_attr(o, TCA_U32_SEL, &sel);
        nl::push_attr(o, TCA_U32_LINK, &HASH_TABLE.to_ne_bytes());
    });
    [
        nl::message(RTM_NEWTFILTER, flags_create(), 1, &t),
        nl::message(RTM_NEWTFILTER, flags_create(), 1, &l),
    ]
}

/// `tc filter add dev IF parent P prio 1 handle 1:HH:N u32 ht 1:HH: match ether {dst|src} MAC` then
/// `flowid 1:C` or `action mirred egress redirect dev IFB`.
pub fn new_filter(
    ifindex: u32,
    parent: u32,
    node: u16,
    mac: Mac,
    field: Field,
    then: Then,
) -> Vec<u8> {
    let mut b = filter_head(ifindex, parent, filter_handle(mac, node));
    nl::push_attr(&mut b, TCA_KIND, b"u32\0");
    nest(&mut b, TCA_OPTIONS, |o| {
        nl::push_attr(o, TCA_U32_HASH, &bucket(mac).to_ne_bytes());
        nl::push_attr(o, TCA_U32_SEL, &mac_selector(mac, field, true));
        match then {
            Then::Class(minor) => nl::push_attr(
                o,
                TCA_U32_CLASSID,
                &(HTB_ROOT | u32::from(minor)).to_ne_bytes(),
            ),
            Then::Redirect(to) => nest(o, TCA_U32_ACT, |acts| {
                nest(acts, 1, |a| {
                    nl::push_attr(a, TCA_ACT_KIND, b"mirred\0");
                    nest(a, TCA_ACT_OPTIONS, |p| {
                        // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt),
                        // eaction, ifindex.
                        let mut m = Vec::with_capacity(28);
                        m.extend_from_slice(&0u32.to_ne_bytes());
                        m.extend_from_slice(&0u32.to_ne_bytes());
                        m.extend_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
                        m.extend_from_slice(&0i32.to_ne_bytes());
                        m.extend_from_slice(&0i32.to_ne_bytes());
                        m.extend_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
                        m.extend_from_slice(&to.to_ne_bytes());
                        nl::push_attr(p, TCA_MIRRED_PARMS, &m);
                    });
                });
            }),
        }
    });
    nl::message(RTM_NEWTFILTER, flags_create(), 1, &b)
}

/// `tc filter del dev IF parent P prio 1 handle 1:HH:N u32`.
pub fn del_filter(ifindex: u32, parent: u32, node: u16, mac: Mac) -> Vec<u8> {
    let mut b = filter_head(ifindex, parent, filter_handle(mac, node));
    nl::push_attr(&mut b, TCA_KIND, b"u32\0");
    nl::message(RTM_DELTFILTER, flags_plain(), 1, &b)
}

/// `(ifindex, handle, parent, kind)` of every qdisc in the namespace.
fn qdiscs(sock: &mnl::Socket) -> io::Result<Vec<(u32, u32, u32, String)>> {
    let req = nl::message(
        RTM_GETQDISC,
        nl::NLM_F_REQUEST | nl::NLM_F_DUMP,
        1,
        &[0; 20],
    );
    let mut out = Vec::new();
    nl::dump(sock, &req, |kind, body| {
        if kind == RTM_NEWQDISC && body.len() >= 20 {
            let u = |i: usize| u32::from_ne_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            let name = nl::attrs(&body[20..])
                .find(|(k, _, _)| *k == TCA_KIND)
                .map(|(_, d, _)| {
                    String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(&[])).into_owned()
                })
                .unwrap_or_default();
            out.push((u(4), u(8), u(12), name));
        }
    })?;
    Ok(out)
}

/// The handles of the filters attached at `parent` of interface `ifindex`.
fn filters(sock: &mnl::Socket, ifindex: u32, parent: u32) -> io::Result<Vec<u32>> {
    let req = nl::message(
        RTM_GETTFILTER,
        nl::NLM_F_REQUEST | nl::NLM_F_DUMP,
        1,
        &tcmsg(ifindex, 0, parent, 0),
    );
    let mut out = Vec::new();
    nl::dump(sock, &req, |kind, body| {
        if kind == RTM_NEWTFILTER && body.len() >= 20 {
            out.push(u32::from_ne_bytes([body[8], body[9], body[10], body[11]]));
        }
    })?;
    Ok(out)
}

/// What an install built.
#[derive(Debug)]
struct Built {
    guest: String,
    guest_ix: u32,
    ifb_ix: u32,
    classes: Classes,
    rates: BTreeMap<Mac, Rates>,
}

/// The rtnetlink limiter.
#[derive(Debug, Default)]
pub struct TcLimiter {
    built: Option<Built>,
}

impl TcLimiter {
    pub fn new() -> TcLimiter {
        TcLimiter::default()
    }
}

fn socket() -> Result<mnl::Socket, LimitError> {
    mnl::Socket::new(mnl::Bus::Route).map_err(|source| LimitError::Kernel {
        op: "open a netlink socket",
        source,
    })
}

fn send(sock: &mnl::Socket, op: &'static str, msg: &[u8]) -> Result<(), LimitError> {
    nl::request(sock, msg).map_err(|source| LimitError::Kernel { op, source })
}

/// A deletion that may find nothing to delete.
fn send_gone_ok(sock: &mnl::Socket, op: &'static str, msg: &[u8]) -> Result<(), LimitError> {
    match nl::request(sock, msg) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        other => other.map_err(|source| LimitError::Kernel { op, source }),
    }
}

fn index_of(name: &str) -> Result<Option<u32>, LimitError> {
    match crate::ifaddr::index_of(name) {
        Ok(i) => Ok(Some(i)),
        Err(crate::ifaddr::IfError::NoSuchInterface(_)) => Ok(None),
        Err(crate::ifaddr::IfError::Netlink(source)) => Err(LimitError::Kernel {
            op: "list the network interfaces",
            source,
        }),
    }
}

impl Built {
    /// Moves one device from its current limits to `new` in the kernel.
    fn apply(&mut self, sock: &mnl::Socket, mac: Mac, new: Rates) -> Result<(), LimitError> {
        let old = self.rates.get(&mac).copied().unwrap_or_default();
        if old == new {
            return Ok(());
        }
        let c = self.classes.get_or_assign(mac)?;
        let (g, f) = (self.guest_ix, self.ifb_ix);
        // Download: class, leaf and dst filter on the guest interface.
        match (old.down_kbit, new.down_kbit) {
            (None, Some(k)) => {
                send(sock, "add a download speed limit", &set_class(g, c, k))?;
                send(sock, "add a download queue", &new_leaf(g, c, k))?;
                let filter = new_filter(g, HTB_ROOT, c, mac, Field::Dst, Then::Class(c));
                send(sock, "add a download speed limit filter", &filter)?;
            }
            (Some(a), Some(k)) if a != k => {
                send(sock, "change a download speed limit", &set_class(g, c, k))?;
            }
            (Some(_), None) => {
                send_gone_ok(
                    sock,
                    "remove a download filter",
                    &del_filter(g, HTB_ROOT, c, mac),
                )?;
                send_gone_ok(sock, "remove a download speed limit", &del_class(g, c))?;
            }
            _ => {}
        }
        // Upload: redirect on the guest ingress, class, leaf and src filter on the ifb.
        match (old.up_kbit, new.up_kbit) {
            (None, Some(k)) => {
                send(sock, "add an upload speed limit", &set_class(f, c, k))?;
                send(sock, "add an upload queue", &new_leaf(f, c, k))?;
                let filter = new_filter(f, HTB_ROOT, c, mac, Field::Src, Then::Class(c));
                send(sock, "add an upload speed limit filter", &filter)?;
                let redirect = new_filter(
                    g,
                    TC_H_INGRESS_PARENT,
                    c,
                    mac,
                    Field::Src,
                    Then::Redirect(f),
                );
                send(
                    sock,
                    "redirect a device's upload to its speed limit",
                    &redirect,
                )?;
            }
            (Some(a), Some(k)) if a != k => {
                send(sock, "change an upload speed limit", &set_class(f, c, k))?;
            }
            (Some(_), None) => {
                let redirect = del_filter(g, TC_H_INGRESS_PARENT, c, mac);
                send_gone_ok(sock, "remove an upload redirect", &redirect)?;
                send_gone_ok(
                    sock,
                    "remove an upload filter",
                    &del_filter(f, HTB_ROOT, c, mac),
                )?;
                send_gone_ok(sock, "remove an upload speed limit", &del_class(f, c))?;
            }
            _ => {}
        }
        if new.is_unlimited() {
            self.rates.remove(&mac);
            self.classes.release(&mac);
        } else {
            self.rates.insert(mac, new);
        }
        Ok(())
    }
}

impl Limiter for TcLimiter {
    /// Not atomic (tc has no transactions): the old shapers are removed, then the new ones
    /// built; for those milliseconds the guests' traffic flows unlimited.
    fn install(&mut self, guest_iface: &str, devices: &[(Mac, Rates)]) -> Result<(), LimitError> {
        let devices = validate(devices)?;
        self.built = None;
        let sock = socket()?;
        let guest_ix =
            index_of(guest_iface)?.ok_or_else(|| LimitError::NoInterface(guest_iface.into()))?;
        send_gone_ok(
            &sock,
            "remove the old download shaper",
            &del_qdisc(guest_ix, false),
        )?;
        send_gone_ok(
            &sock,
            "remove the old upload redirects",
            &del_qdisc(guest_ix, true),
        )?;
        send_gone_ok(&sock, "remove the old upload device", &del_ifb())?;
        send(&sock, "create the upload shaping device", &new_ifb())?;
        let ifb_ix = index_of(IFB)?.ok_or_else(|| LimitError::NoInterface(IFB.into()))?;
        send(&sock, "add the download shaper", &new_htb_root(guest_ix))?;
        send(&sock, "add the upload shaper", &new_htb_root(ifb_ix))?;
        send(&sock, "add the upload redirect hook", &new_clsact(guest_ix))?;
        for (ix, parent, field) in [
            (guest_ix, HTB_ROOT, Field::Dst),
            (guest_ix, TC_H_INGRESS_PARENT, Field::Src),
            (ifb_ix, HTB_ROOT, Field::Src),
        ] {
            for msg in new_hash(ix, parent, field) {
                send(&sock, "add the speed limit lookup table", &msg)?;
            }
        }
        let mut built = Built {
            guest: guest_iface.to_owned(),
            guest_ix,
            ifb_ix,
            classes: Classes::default(),
            rates: BTreeMap::new(),
        };
        for (mac, r) in devices {
            built.apply(&sock, mac, r)?;
        }
        self.built = Some(built);
        Ok(())
    }

    fn set(&mut self, devices: &[(Mac, Rates)]) -> Result<(), LimitError> {
        let devices = validate(devices)?;
        let built = self.built.as_mut().ok_or(LimitError::NotInstalled)?;
        let sock = socket()?;
        for (mac, r) in devices {
            built.apply(&sock, mac, r)?;
        }
        Ok(())
    }

    fn intact(&mut self) -> Result<bool, LimitError> {
        let Some(b) = &self.built else {
            return Ok(false);
        };
        if index_of(&b.guest)? != Some(b.guest_ix) || index_of(IFB)? != Some(b.ifb_ix) {
            return Ok(false);
        }
        let sock = socket()?;
        let q = qdiscs(&sock).map_err(|source| LimitError::Kernel {
            op: "list the traffic shapers",
            source,
        })?;
        let has = |ix: u32, handle: u32, parent: u32, kind: &str| {
            q.iter()
                .any(|(i, h, p, k)| *i == ix && *h == handle && *p == parent && k == kind)
        };
        let mut ok = has(b.guest_ix, HTB_ROOT, TC_H_ROOT, "htb")
            && has(b.ifb_ix, HTB_ROOT, TC_H_ROOT, "htb")
            && has(b.guest_ix, CLSACT_HANDLE, TC_H_CLSACT, "clsact");
        if !ok {
            return Ok(false);
        }
        // Each limited way of each device has its leaf queue (gone if its class was deleted)
        // and its filters.
        let listed = |ix, parent| {
            filters(&sock, ix, parent).map_err(|source| LimitError::Kernel {
                op: "list the speed limit filters",
                source,
            })
        };
        let down_filters = listed(b.guest_ix, HTB_ROOT)?;
        let redirects = listed(b.guest_ix, TC_H_INGRESS_PARENT)?;
        let up_filters = listed(b.ifb_ix, HTB_ROOT)?;
        for list in [&down_filters, &redirects, &up_filters] {
            ok &= list.contains(&LINK_NODE);
        }
        for (mac, r) in &b.rates {
            let Some(c) = b.classes.get(mac) else {
                return Ok(false);
            };
            let leaf = |ix| has(ix, u32::from(c) << 16, HTB_ROOT | u32::from(c), "pfifo");
            let node = filter_handle(*mac, c);
            ok &= r.down_kbit.is_none() || (leaf(b.guest_ix) && down_filters.contains(&node));
            ok &= r.up_kbit.is_none()
                || (leaf(b.ifb_ix) && redirects.contains(&node) && up_filters.contains(&node));
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_what_tc_writes_for_match_ether() {
        // `tc filter ... u32 match ether dst 02:00:00:00:00:10` lists its keys as
        // 00000200/0000ffff at -16 and 00000010/ffffffff at -12.
        let mac = Mac([2, 0, 0, 0, 0, 0x10]);
        let s = mac_selector(mac, Field::Dst, true);
        assert_eq!(s.len(), 16 + 2 * 16);
        assert_eq!(&s[..4], &[TC_U32_TERMINAL, 0, 2, 0]);
        assert_eq!(&s[16..20], &[0, 0, 0xff, 0xff]);
        assert_eq!(&s[20..24], &[0, 0, 2, 0]);
        assert_eq!(i32::from_ne_bytes(s[24..28].try_into().unwrap()), -16);
        assert_eq!(&s[36..40], &[0, 0, 0, 0x10]);
        assert_eq!(i32::from_ne_bytes(s[40..44].try_into().unwrap()), -12);
        // Source: 02000000/ffffffff at -8 and 00100000/ffff0000 at -4.
        let s = mac_selector(mac, Field::Src, false);
        assert_eq!(s[0], 0);
        assert_eq!(&s[20..24], &[2, 0, 0, 0]);
        assert_eq!(i32::from_ne_bytes(s[24..28].try_into().unwrap()), -8);
        assert_eq!(&s[32..36], &[0xff, 0xff, 0, 0]);
        assert_eq!(&s[36..40], &[0, 0x10, 0, 0]);
        assert_eq!(i32::from_ne_bytes(s[40..44].try_into().unwrap()), -4);
    }

    #[test]
    fn class_message_carries_rate_burst_and_ids() {
        let m = set_class(7, 2, 2000);
        let body = &m[16..];
        assert_eq!(u32::from_ne_bytes(body[4..8].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_ne_bytes(body[8..12].try_into().unwrap()),
            0x0001_0002
        );
        assert_eq!(
            u32::from_ne_bytes(body[12..16].try_into().unwrap()),
            HTB_ROOT
        );
        let opts = nl::attrs(&body[20..])
            .find(|(k, _, _)| *k == TCA_OPTIONS)
            .unwrap()
            .1;
        let parms = nl::attrs(opts)
            .find(|(k, _, _)| *k == TCA_HTB_PARMS)
            .unwrap()
            .1;
        assert_eq!(parms.len(), 44);
        // rate and ceil 250 000 bytes/s, buffer 20 ms in 64 ns ticks.
        assert_eq!(
            u32::from_ne_bytes(parms[8..12].try_into().unwrap()),
            250_000
        );
        assert_eq!(
            u32::from_ne_bytes(parms[20..24].try_into().unwrap()),
            250_000
        );
        assert_eq!(
            u32::from_ne_bytes(parms[24..28].try_into().unwrap()),
            312_500
        );
        assert_eq!(
            u32::from_ne_bytes(parms[32..36].try_into().unwrap()),
            25_000
        );
    }

    #[test]
    fn filter_handles_are_the_last_mac_byte_bucket_and_class() {
        let m = del_filter(3, TC_H_INGRESS_PARENT, 9, Mac([2, 0, 0, 0, 0, 0xab]));
        let body = &m[16..];
        assert_eq!(
            u32::from_ne_bytes(body[8..12].try_into().unwrap()),
            0x001a_b009
        );
        assert_eq!(
            u32::from_ne_bytes(body[12..16].try_into().unwrap()),
            TC_H_INGRESS_PARENT
        );
        // prio 1, protocol ETH_P_ALL in network order.
        assert_eq!(
            u32::from_ne_bytes(body[16..20].try_into().unwrap()),
            (1 << 16) | u32::from(3u16.to_be())
        );
    }
}
