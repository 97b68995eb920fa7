//! The kernel side of [`Firewall`]: element changes and reads over netlink (nftnl + mnl, with
//! `nftnl-sys` for element timeouts and dumps, which the safe API lacks), in batches.
//!
//! The table itself is installed by handing the rendered script to `nft -f -` once per install
//! (one atomic transaction, at start-up, reload or rebuild — never per client), then checked
//! over netlink. Every per-device operation (allow, refresh, remove, list, health) is netlink.

use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CStr};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use nftnl::nftnl_sys as sys;
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, FinalizedBatch, MsgType, ProtoFamily, Table};

use super::{ruleset_script, Firewall, FirewallError, Health, Ruleset, CHAINS};
use crate::mac::Mac;

const TABLE: &CStr = c"wifipos";
const ALLOWED: &CStr = c"allowed";
/// Elements per batch: well below what makes the kernel answer ENOBUFS.
const CHUNK: usize = 2000;

/// An `ether_addr` set key.
struct EtherAddr(Mac);

impl SetKey for EtherAddr {
    const TYPE: u32 = 9;
    const LEN: u32 = 6;
    fn data(&self) -> Box<[u8]> {
        Box::new(self.0 .0)
    }
}

/// The netlink firewall. Holds no socket between calls: each operation opens one, so it works
/// from whatever network namespace the calling thread is in.
#[derive(Debug, Default)]
pub struct NetlinkFirewall {
    nft: Option<String>,
}

impl NetlinkFirewall {
    pub fn new() -> NetlinkFirewall {
        NetlinkFirewall::default()
    }

    /// Uses another `nft` binary for installing the table.
    pub fn with_nft(path: &str) -> NetlinkFirewall {
        NetlinkFirewall {
            nft: Some(path.to_owned()),
        }
    }

    fn change(
        &mut self,
        op: &'static str,
        del: &[Mac],
        add: &[(Mac, Duration)],
    ) -> Result<(), FirewallError> {
        let table = Table::new(TABLE, ProtoFamily::Inet);
        let mut del_set: Set<EtherAddr> = Set::new_named(ALLOWED, 0, &table, ProtoFamily::Inet);
        for m in del {
            del_set.add(&EtherAddr(*m));
        }
        let add_set: Set<EtherAddr> = Set::new_named(ALLOWED, 0, &table, ProtoFamily::Inet);
        for (m, d) in add {
            add_with_timeout(&add_set, *m, *d)?;
        }
        let mut batch = Batch::new();
        if !del.is_empty() {
            batch.add_iter(del_set.elems_iter(), MsgType::Del);
        }
        if !add.is_empty() {
            batch.add_iter(add_set.elems_iter(), MsgType::Add);
        }
        send_and_process(&batch.finalize(), op)
    }
}

/// Adds an element with a timeout to `set`'s element list.
fn add_with_timeout(set: &Set<EtherAddr>, mac: Mac, d: Duration) -> Result<(), FirewallError> {
    let ms = d.as_millis().clamp(1000, u128::from(u64::MAX)) as u64;
    // SAFETY: nftnl_set_elem_alloc returns an owned element or null (checked); the key buffer
    // is 6 valid bytes that libnftnl copies; nftnl_set_elem_add transfers ownership of the
    // element to the set, which frees it when the `Set` is dropped.
    unsafe {
        let elem = sys::nftnl_set_elem_alloc();
        if elem.is_null() {
            return Err(FirewallError::Kernel {
                op: "allocate a set element",
                source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
            });
        }
        sys::nftnl_set_elem_set(
            elem,
            sys::NFTNL_SET_ELEM_KEY as u16,
            mac.0.as_ptr().cast::<c_void>(),
            6,
        );
        sys::nftnl_set_elem_set_u64(elem, sys::NFTNL_SET_ELEM_TIMEOUT as u16, ms);
        sys::nftnl_set_elem_add(set.as_ptr().as_ptr(), elem);
    }
    Ok(())
}

/// Sends a batch and reads every acknowledgement, so a kernel error is an error.
fn send_and_process(batch: &FinalizedBatch, op: &'static str) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Kernel { op, source };
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(err)?;
    let portid = socket.portid();
    socket.send_all(batch).map_err(err)?;
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

/// Netlink message types and flags used below (linux/netfilter/nf_tables.h, linux/netlink.h).
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETSETELEM: u16 = 13;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NFPROTO_INET: u16 = 1;

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
fn request(
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

impl Firewall for NetlinkFirewall {
    fn install(
        &mut self,
        rules: &Ruleset,
        allowed: &[(Mac, Duration)],
    ) -> Result<(), FirewallError> {
        let script = ruleset_script(rules, allowed)?;
        let nft = self.nft.as_deref().unwrap_or("nft");
        let mut child = Command::new(nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FirewallError::Install(format!("cannot run {nft}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| FirewallError::Install(format!("writing to {nft}: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| FirewallError::Install(e.to_string()))?;
        if !out.status.success() {
            return Err(FirewallError::Install(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        match self.health()? {
            Health::Intact => Ok(()),
            Health::Missing => Err(FirewallError::Install(
                "the table is not there after installing it".into(),
            )),
        }
    }

    fn allow(&mut self, entries: &[(Mac, Duration)]) -> Result<(), FirewallError> {
        // Last entry for a MAC wins; zero time means no access.
        let mut wanted: HashMap<Mac, Duration> = HashMap::new();
        for (m, d) in entries {
            wanted.insert(*m, *d);
        }
        let (give, take): (Vec<_>, Vec<_>) =
            wanted.into_iter().partition(|(_, d)| d.as_secs() >= 1);
        if !take.is_empty() {
            self.remove(&take.iter().map(|(m, _)| *m).collect::<Vec<_>>())?;
        }
        // Adding is exclusive in the kernel (EEXIST): delete present MACs and re-add them in the
        // same batch, which refreshes their timeout atomically. An element expiring between the
        // listing and the batch makes the delete fail (ENOENT); list again and retry once.
        for attempt in 0..2 {
            let present: HashSet<Mac> = self.list_allowed()?.into_iter().map(|(m, _)| m).collect();
            let result = give.chunks(CHUNK).try_for_each(|chunk| {
                let del: Vec<Mac> = chunk
                    .iter()
                    .map(|(m, _)| *m)
                    .filter(|m| present.contains(m))
                    .collect();
                self.change("let devices through (add to the allowed set)", &del, chunk)
            });
            match result {
                Err(FirewallError::Kernel { source, .. })
                    if attempt == 0 && source.raw_os_error() == Some(libc::ENOENT) => {}
                other => return other,
            }
        }
        Ok(())
    }

    fn remove(&mut self, macs: &[Mac]) -> Result<(), FirewallError> {
        let present: HashSet<Mac> = self.list_allowed()?.into_iter().map(|(m, _)| m).collect();
        let del: Vec<Mac> = macs
            .iter()
            .copied()
            .filter(|m| present.contains(m))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        del.chunks(CHUNK)
            .try_for_each(|chunk| self.change("remove devices from the allowed set", chunk, &[]))
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

    fn health(&mut self) -> Result<Health, FirewallError> {
        let missing = |e: &FirewallError| matches!(e, FirewallError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ENOENT));
        match self.list_allowed() {
            Err(e) if missing(&e) => return Ok(Health::Missing),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        for name in CHAINS {
            let cname = std::ffi::CString::new(name).unwrap_or_default();
            let r = request(
                "check a chain",
                |buf, seq| {
                    // SAFETY: as above; the chain object is freed before returning and its
                    // strings are copied by libnftnl.
                    unsafe {
                        let chain = sys::nftnl_chain_alloc();
                        if chain.is_null() {
                            return 0;
                        }
                        sys::nftnl_chain_set_str(
                            chain,
                            sys::NFTNL_CHAIN_TABLE as u16,
                            TABLE.as_ptr(),
                        );
                        sys::nftnl_chain_set_str(
                            chain,
                            sys::NFTNL_CHAIN_NAME as u16,
                            cname.as_ptr(),
                        );
                        let nlh = sys::nftnl_nlmsg_build_hdr(
                            buf,
                            NFT_MSG_GETCHAIN,
                            NFPROTO_INET,
                            NLM_F_REQUEST | NLM_F_ACK,
                            seq,
                        );
                        sys::nftnl_chain_nlmsg_build_payload(nlh, chain);
                        sys::nftnl_chain_free(chain);
                        (*nlh).nlmsg_len as usize
                    }
                },
                |_| {},
            );
            match r {
                Err(e) if missing(&e) => return Ok(Health::Missing),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        Ok(Health::Intact)
    }
}
