//! The names and numbers the nf_tables messages carry: our table's name, message types, netlink
//! flags, protocol families, set and element flags (linux/netfilter/nf_tables.h,
//! linux/netlink.h).
//!
//! Owns: these constants only. No code, and nothing from the other netlink modules.

use std::ffi::CStr;

pub(super) const TABLE: &CStr = c"wifipos";

/// Netlink message types and flags used below (linux/netfilter/nf_tables.h, linux/netlink.h).
pub(super) const NFT_MSG_GETTABLE: u16 = 1;
pub(super) const NFT_MSG_GETCHAIN: u16 = 4;
pub(super) const NFT_MSG_GETRULE: u16 = 7;
pub(super) const NFT_MSG_NEWSET: u16 = 9;
pub(super) const NFT_MSG_GETSET: u16 = 10;
pub(super) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(super) const NFT_MSG_GETSETELEM: u16 = 13;
pub(super) const NFT_MSG_DELSETELEM: u16 = 14;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 1;
pub(super) const NLM_F_ACK: u16 = 4;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NFPROTO_INET: u16 = 1;
pub(super) const NFPROTO_NETDEV: u16 = crate::firewall::usage::NFPROTO_NETDEV as u16;
// nftnl's `Hook` names the inet hooks only; the netdev egress hook has the number of
// NF_INET_LOCAL_IN (`Hook::In`), which `install::new_chain` uses for it.
const _: () = assert!(libc::NF_NETDEV_EGRESS == libc::NF_INET_LOCAL_IN);
pub(super) const NFT_SET_INTERVAL: u32 = 0x4;
pub(super) const NFT_SET_TIMEOUT: u32 = 0x10;
/// `flags dynamic`: the packet path may add elements.
pub(super) const NFT_SET_EVAL: u32 = 0x20;
pub(super) const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
