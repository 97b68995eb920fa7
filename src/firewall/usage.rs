//! Per-device traffic counters, read back from the kernel. Uploads are counted by the `up` set
//! of `inet wifipos` (a lookup in the forward chain updates the matching element's counter),
//! downloads by the `down` set of `netdev wifipos` (a lookup on the guest interface's egress
//! hook); see [`super::ruleset::UP`] and [`super::ruleset::DOWN`]. The elements themselves are
//! added and removed by [`super::netlink`] in the same batches as the allowed set.
//!
//! Owns: the element dumps of those two sets and the decoding of each element's counter
//! (`NFTA_SET_ELEM_EXPR` or `NFTA_SET_ELEM_EXPRESSIONS`), and the listing of `netdev wifipos`
//! that [`super::Firewall::check`] compares with what was built. Plain netlink bytes through
//! [`crate::nl`]: no libnftnl objects, no `unsafe`.

use std::collections::BTreeMap;

use super::ruleset::{Family, SetSpec, DOWN, DOWN_CHAIN, UP};
use super::{FirewallError, Mac, Usage, TABLE};
use crate::nl;

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
const SUBSYS: u16 = 10 << 8;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
pub(super) const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_INET: u8 = 1;

/// Attribute numbers (linux/netfilter/nf_tables.h).
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE and NFTA_SET_TABLE are all 1.
const NFTA_X_TABLE: u16 = 1;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;

fn family_byte(f: Family) -> u8 {
    match f {
        Family::Inet => NFPROTO_INET,
        Family::Netdev => NFPROTO_NETDEV,
    }
}

/// A dump request for one nf_tables object kind in one family, with `attrs` as its payload.
fn dump_request(kind: u16, family: u8, attrs: &[(u16, &str)]) -> Vec<u8> {
    // struct nfgenmsg: family, version (NFNETLINK_V0), resource id (0, big-endian).
    let mut body = vec![family, 0, 0, 0];
    for (t, s) in attrs {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        nl::push_attr(&mut body, *t, &v);
    }
    nl::message(
        SUBSYS | kind,
        nl::NLM_F_REQUEST | nl::NLM_F_DUMP,
        std::process::id(),
        &body,
    )
}

/// Runs one dump on a fresh netfilter socket (so it acts in the calling thread's network
/// namespace) and hands every answer's attributes (after the nfgenmsg) to `each`.
fn dump(
    op: &'static str,
    request: &[u8],
    mut each: impl FnMut(&[u8]),
) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
    nl::dump(&socket, request, |_, body| {
        if let Some(attrs) = body.get(4..) {
            each(attrs);
        }
    })
    .map_err(err)
}

/// The first attribute of type `kind` in `attrs`.
fn attr(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    nl::attrs(attrs)
        .find(|(k, _, _)| *k == kind)
        .map(|(_, d, _)| d)
}

/// A NUL-terminated string attribute.
fn text(data: &[u8]) -> &[u8] {
    data.split(|b| *b == 0).next().unwrap_or(&[])
}

fn be64(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

/// `(bytes, packets)` of a `counter` expression (`NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`); `None`
/// for any other expression.
fn counter(expr: &[u8]) -> Option<(u64, u64)> {
    if text(attr(expr, NFTA_EXPR_NAME)?) != b"counter" {
        return None;
    }
    let data = attr(expr, NFTA_EXPR_DATA)?;
    Some((
        be64(attr(data, NFTA_COUNTER_BYTES)?)?,
        be64(attr(data, NFTA_COUNTER_PACKETS)?)?,
    ))
}

/// Every element of one NEWSETELEM message (its attributes after the nfgenmsg) whose key is a
/// MAC, with its counter (zero when it has none).
fn elements(msg: &[u8], out: &mut Vec<(Mac, u64, u64)>) {
    let Some(list) = attr(msg, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return;
    };
    for (kind, elem, _) in nl::attrs(list) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let Some(key) = attr(elem, NFTA_SET_ELEM_KEY).and_then(|k| attr(k, NFTA_DATA_VALUE)) else {
            continue;
        };
        let Some(mac) = key.get(..6).and_then(|k| <[u8; 6]>::try_from(k).ok()) else {
            continue;
        };
        // One expression comes as NFTA_SET_ELEM_EXPR; several as a list.
        let mut found = attr(elem, NFTA_SET_ELEM_EXPR).and_then(counter);
        if found.is_none() {
            if let Some(exprs) = attr(elem, NFTA_SET_ELEM_EXPRESSIONS) {
                found = nl::attrs(exprs)
                    .filter(|(k, _, _)| *k == NFTA_LIST_ELEM)
                    .find_map(|(_, e, _)| counter(e));
            }
        }
        let (bytes, packets) = found.unwrap_or_default();
        out.push((Mac(mac), bytes, packets));
    }
}

/// Every element of one counting set with its counter: one dump.
fn counters(spec: &SetSpec) -> Result<Vec<(Mac, u64, u64)>, FirewallError> {
    let op = match spec.family {
        Family::Inet => "read the upload counters (set up of table inet wifipos)",
        Family::Netdev => "read the download counters (set down of table netdev wifipos)",
    };
    let request = dump_request(
        NFT_MSG_GETSETELEM,
        family_byte(spec.family),
        &[
            (NFTA_SET_ELEM_LIST_TABLE, TABLE),
            (NFTA_SET_ELEM_LIST_SET, spec.name),
        ],
    );
    let mut out = Vec::new();
    dump(op, &request, |msg| elements(msg, &mut out))?;
    Ok(out)
}

/// What the kernel counted per device: the `up` set, and the `down` set when downloads are
/// counted (`down`). Devices are those of `up` (and of `down`, should one be only there).
pub(super) fn read(down: bool) -> Result<Vec<(Mac, Usage)>, FirewallError> {
    let mut all: BTreeMap<Mac, Usage> = BTreeMap::new();
    for (mac, bytes, packets) in counters(&UP)? {
        let u = all.entry(mac).or_default();
        u.up_bytes = bytes;
        u.up_packets = packets;
    }
    if down {
        for (mac, bytes, packets) in counters(&DOWN)? {
            let u = all.entry(mac).or_default();
            u.down_bytes = bytes;
            u.down_packets = packets;
        }
    }
    Ok(all.into_iter().collect())
}

/// What `netdev wifipos` holds, for [`super::Firewall::check`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Netdev {
    pub handle: u64,
    pub chains: Vec<String>,
    /// Rules in the `down` chain.
    pub rules: usize,
    /// Set names with their flags.
    pub sets: Vec<(String, u32)>,
}

/// Lists `netdev wifipos`: `None` when there is no such table.
pub(super) fn netdev() -> Result<Option<Netdev>, FirewallError> {
    let mut handle = None;
    let ours = |msg: &[u8]| attr(msg, NFTA_X_TABLE).map(text) == Some(TABLE.as_bytes());
    dump(
        "look up the table netdev wifipos",
        &dump_request(NFT_MSG_GETTABLE, NFPROTO_NETDEV, &[]),
        |msg| {
            if ours(msg) {
                handle = attr(msg, NFTA_TABLE_HANDLE).and_then(be64);
            }
        },
    )?;
    let Some(handle) = handle else {
        return Ok(None);
    };
    let mut n = Netdev {
        handle,
        ..Netdev::default()
    };
    dump(
        "list the chains of table netdev wifipos",
        &dump_request(NFT_MSG_GETCHAIN, NFPROTO_NETDEV, &[]),
        |msg| {
            if let (true, Some(name)) = (ours(msg), attr(msg, NFTA_CHAIN_NAME)) {
                n.chains
                    .push(String::from_utf8_lossy(text(name)).into_owned());
            }
        },
    )?;
    dump(
        "list the rules of table netdev wifipos",
        &dump_request(NFT_MSG_GETRULE, NFPROTO_NETDEV, &[(NFTA_X_TABLE, TABLE)]),
        |msg| {
            let chain = attr(msg, NFTA_RULE_CHAIN).map(text);
            if ours(msg) && chain == Some(DOWN_CHAIN.name.as_bytes()) {
                n.rules += 1;
            }
        },
    )?;
    dump(
        "list the sets of table netdev wifipos",
        &dump_request(NFT_MSG_GETSET, NFPROTO_NETDEV, &[(NFTA_X_TABLE, TABLE)]),
        |msg| {
            if let (true, Some(name)) = (ours(msg), attr(msg, NFTA_SET_NAME)) {
                let flags = attr(msg, NFTA_SET_FLAGS)
                    .and_then(|f| f.get(..4))
                    .map_or(0, |f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
                n.sets
                    .push((String::from_utf8_lossy(text(name)).into_owned(), flags));
            }
        },
    )?;
    Ok(Some(n))
}

/// How `netdev wifipos` differs from what was built (one `down` chain holding `rules` rules,
/// one `down` set); `None` when it matches.
pub(super) fn netdev_differences(n: &Netdev, rules: usize) -> Option<String> {
    if !n.chains.iter().any(|c| c == DOWN_CHAIN.name) {
        return Some(format!(
            "chain {} of table netdev wifipos (download counting) is missing",
            DOWN_CHAIN.name
        ));
    }
    if n.chains.len() != 1 {
        return Some(format!(
            "table netdev wifipos has {} chains, not 1",
            n.chains.len()
        ));
    }
    if n.rules != rules {
        return Some(format!(
            "chain {} of table netdev wifipos has {} rules, not {rules}",
            DOWN_CHAIN.name, n.rules
        ));
    }
    if n.sets.len() != 1 || n.sets[0].0 != DOWN.name {
        return Some(format!(
            "set {} of table netdev wifipos (download counting) is missing",
            DOWN.name
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nest(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        nl::push_attr(&mut b, kind | 0x8000, inner);
        b
    }

    fn attr_bytes(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        nl::push_attr(&mut b, kind, data);
        b
    }

    fn counter_expr(bytes: u64, packets: u64) -> Vec<u8> {
        let mut data = attr_bytes(NFTA_COUNTER_BYTES, &bytes.to_be_bytes());
        data.extend(attr_bytes(NFTA_COUNTER_PACKETS, &packets.to_be_bytes()));
        let mut e = attr_bytes(NFTA_EXPR_NAME, b"counter\0");
        e.extend(nest(NFTA_EXPR_DATA, &data));
        e
    }

    fn element(mac: [u8; 6], exprs: Vec<u8>) -> Vec<u8> {
        let mut e = nest(NFTA_SET_ELEM_KEY, &attr_bytes(NFTA_DATA_VALUE, &mac));
        e.extend(exprs);
        nest(NFTA_LIST_ELEM, &e)
    }

    #[test]
    fn counters_decode_from_one_expression_or_a_list_and_odd_elements_are_skipped() {
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        let c = [2, 0, 0, 0, 0, 3];
        let mut list = element(a, nest(NFTA_SET_ELEM_EXPR, &counter_expr(1 << 40, 7)));
        let mut other = attr_bytes(NFTA_EXPR_NAME, b"quota\0");
        other.extend(nest(NFTA_EXPR_DATA, &[]));
        let mut several = nest(NFTA_LIST_ELEM, &other);
        several.extend(nest(NFTA_LIST_ELEM, &counter_expr(1500, 1)));
        list.extend(element(b, nest(NFTA_SET_ELEM_EXPRESSIONS, &several)));
        // No counter (a set made without one): counted as zero.
        list.extend(element(c, Vec::new()));
        // A key too short for a MAC: skipped.
        list.extend(nest(
            NFTA_LIST_ELEM,
            &nest(NFTA_SET_ELEM_KEY, &attr_bytes(NFTA_DATA_VALUE, &[1, 2])),
        ));
        let mut msg = attr_bytes(NFTA_SET_ELEM_LIST_TABLE, b"wifipos\0");
        msg.extend(nest(NFTA_SET_ELEM_LIST_ELEMENTS, &list));
        let mut out = Vec::new();
        elements(&msg, &mut out);
        assert_eq!(
            out,
            vec![(Mac(a), 1 << 40, 7), (Mac(b), 1500, 1), (Mac(c), 0, 0)]
        );
    }

    #[test]
    fn dump_requests_name_the_family_table_and_set() {
        let r = dump_request(NFT_MSG_GETSETELEM, NFPROTO_NETDEV, &[(2, "down")]);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), (10 << 8) | 13);
        assert_eq!(r[16], NFPROTO_NETDEV);
        let a: Vec<_> = nl::attrs(&r[20..])
            .map(|(k, d, _)| (k, d.to_vec()))
            .collect();
        assert_eq!(a, vec![(2, b"down\0".to_vec())]);
    }

    #[test]
    fn a_netdev_table_without_its_chain_or_set_differs() {
        let good = Netdev {
            handle: 1,
            chains: vec!["down".into()],
            rules: 1,
            sets: vec![("down".into(), 0)],
        };
        assert_eq!(netdev_differences(&good, 1), None);
        let no_chain = Netdev {
            chains: vec![],
            ..good.clone()
        };
        assert!(netdev_differences(&no_chain, 1)
            .unwrap()
            .contains("chain down"));
        assert!(netdev_differences(&good, 2).is_some());
        let no_set = Netdev {
            sets: vec![],
            ..good
        };
        assert!(netdev_differences(&no_set, 1).unwrap().contains("set down"));
    }
}
