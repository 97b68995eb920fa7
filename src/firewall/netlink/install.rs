//! The install batch: `inet wifipos` created or cleared, its sets with their elements, its
//! chains with the rules of [`crate::firewall::ruleset`]'s plan turned into nftnl expressions,
//! and with download counting the same for `netdev wifipos`. All in one batch, all or nothing.
//!
//! Owns: the chains and rules as netlink objects (matches, actions, hooks) and the order of
//! the install batch. Does not own the sets and elements (`sets`), sending (`socket`) or
//! checking the result (`read`).

use std::ffi::CString;
use std::time::Duration;

use nftnl::expr::{Bitwise, Conntrack, IcmpCode, RejectionType, States, Verdict};
use nftnl::{
    Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table,
};

use super::proto::TABLE;
use super::sets::{
    add_elems, allowed_elems, dedup, garden_elems, mac_elems, oom, ElemOp, NewSet, SetObj,
};
use crate::firewall::exprs::{
    self, Cmp, DynsetUpdate, Load, LookupSet, MetaLoad, PayloadLoad, PayloadTo, Redir,
};
use crate::firewall::ruleset::{
    self, Action, ChainSpec, KeyType, Match, CHAIN_SPECS, NETDEV_SETS, SETS,
};
use crate::firewall::{FirewallError, Mac, Ruleset};

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

/// The install batch: create-or-clear the table (add, delete, add), the sets with their
/// elements (paid devices with their time left, and in `up` to be counted), the chains and
/// their rules; with `egress`, the same for `netdev wifipos` (download counting). All or
/// nothing. Also says how many rules the netdev chain got.
pub(super) fn install_batch(
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
