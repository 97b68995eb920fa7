//! Small nftables expressions that safe `nftnl` lacks or makes awkward (register loads by
//! explicit offset, byte comparisons, lookups by set name and id, redirect), through its public
//! `Expression` trait. Each builds one `nftnl_expr` from plain values.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::Rule;

/// `NFT_REG_1`, the register every load here writes and every consumer reads.
const REG1: u32 = 1;

/// Allocates an expression of kind `name`; aborts like nftnl itself only on out-of-memory.
fn alloc(name: &'static std::ffi::CStr) -> NonNull<sys::nftnl_expr> {
    // SAFETY: `name` is a valid NUL-terminated string; the result is checked for null.
    let e = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    match NonNull::new(e) {
        Some(e) => e,
        None => std::alloc::handle_alloc_error(std::alloc::Layout::new::<u8>()),
    }
}

/// `meta KEY` into register 1.
pub struct MetaLoad(pub u32);

/// nf_tables meta keys used here.
pub const META_NFPROTO: u32 = 15;
pub const META_L4PROTO: u32 = 16;
pub const META_IIFNAME: u32 = 6;
pub const META_OIFNAME: u32 = 7;
pub const META_IIFTYPE: u32 = 8;

impl Expression for MetaLoad {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"meta");
        // SAFETY: `e` is a live meta expression; u32 attributes are copied.
        unsafe {
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_KEY as u16, self.0);
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_META_DREG as u16, REG1);
        }
        e
    }
}

/// Payload bases.
pub const LL_HEADER: u32 = 0;
pub const NETWORK_HEADER: u32 = 1;
pub const TRANSPORT_HEADER: u32 = 2;

/// `len` bytes at `offset` of a packet header into register 1.
pub struct PayloadLoad {
    pub base: u32,
    pub offset: u32,
    pub len: u32,
}

impl Expression for PayloadLoad {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"payload");
        // SAFETY: `e` is a live payload expression; u32 attributes are copied.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_DREG as u16, REG1);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_BASE as u16, self.base);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, self.offset);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, self.len);
        }
        e
    }
}

/// Compares register 1 with bytes given in the order the register holds them.
pub struct Cmp {
    pub eq: bool,
    pub data: Vec<u8>,
}

impl Expression for Cmp {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"cmp");
        // NFT_CMP_EQ = 0, NFT_CMP_NEQ = 1.
        let op = if self.eq { 0 } else { 1 };
        // SAFETY: `e` is a live cmp expression; libnftnl copies `data.len()` bytes from the
        // vector, which outlives the call.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_CMP_SREG as u16, REG1);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_CMP_OP as u16, op);
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_CMP_DATA as u16,
                self.data.as_ptr().cast::<c_void>(),
                self.data.len() as u32,
            );
        }
        e
    }
}

/// `register 1 @set`, naming the set and its id (so it works on a set created in the same
/// batch). `invert` is `NFT_LOOKUP_F_INV` (`!= @set`).
pub struct LookupSet {
    pub name: CString,
    pub id: u32,
    pub invert: bool,
}

impl Expression for LookupSet {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"lookup");
        // SAFETY: `e` is a live lookup expression; the name is a valid C string that libnftnl
        // copies.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_SREG as u16, REG1);
            sys::nftnl_expr_set_str(p, sys::NFTNL_EXPR_LOOKUP_SET as u16, self.name.as_ptr());
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_SET_ID as u16, self.id);
            if self.invert {
                // NFT_LOOKUP_F_INV
                sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_LOOKUP_FLAGS as u16, 1);
            }
        }
        e
    }
}

/// Loads a port (network byte order) into register 1 and redirects to it: `redirect to :port`.
/// Preceded by a [`Load`] of the port.
pub struct Redir;

impl Expression for Redir {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"redir");
        // SAFETY: `e` is a live redir expression; the attribute is a copied u32.
        unsafe {
            sys::nftnl_expr_set_u32(e.as_ptr(), sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN as u16, REG1);
        }
        e
    }
}

/// Puts bytes into register 1 (`immediate`).
pub struct Load(pub Vec<u8>);

impl Expression for Load {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"immediate");
        // SAFETY: `e` is a live immediate expression; libnftnl copies the bytes.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_IMM_DREG as u16, REG1);
            sys::nftnl_expr_set(
                p,
                sys::NFTNL_EXPR_IMM_DATA as u16,
                self.0.as_ptr().cast::<c_void>(),
                self.0.len() as u32,
            );
        }
        e
    }
}

/// `len` bytes at `offset` of a packet header into the 32-bit register `reg32` (0-15, i.e.
/// `NFT_REG32_00 + reg32`), for building a concatenated key across registers. The kernel
/// zero-pads a load that is not a multiple of four bytes.
pub struct PayloadTo {
    pub base: u32,
    pub offset: u32,
    pub len: u32,
    pub reg32: u32,
}

/// `NFT_REG32_00`: the first 32-bit register.
const REG32_00: u32 = 8;

impl Expression for PayloadTo {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"payload");
        // SAFETY: `e` is a live payload expression; u32 attributes are copied.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(
                p,
                sys::NFTNL_EXPR_PAYLOAD_DREG as u16,
                REG32_00 + self.reg32,
            );
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_BASE as u16, self.base);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, self.offset);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, self.len);
        }
        e
    }
}

/// `update @set { key }` with the key starting at 32-bit register 0 (`NFT_REG32_00`): adds
/// the element or refreshes its timeout to the set's default.
pub struct DynsetUpdate {
    pub name: CString,
    pub id: u32,
}

impl Expression for DynsetUpdate {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        let e = alloc(c"dynset");
        // NFT_DYNSET_OP_UPDATE = 1.
        // SAFETY: `e` is a live dynset expression; the name is a valid C string libnftnl
        // copies; u32 attributes are copied.
        unsafe {
            let p = e.as_ptr();
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_DYNSET_SREG_KEY as u16, REG32_00);
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_DYNSET_OP as u16, 1);
            sys::nftnl_expr_set_str(
                p,
                sys::NFTNL_EXPR_DYNSET_SET_NAME as u16,
                self.name.as_ptr(),
            );
            sys::nftnl_expr_set_u32(p, sys::NFTNL_EXPR_DYNSET_SET_ID as u16, self.id);
        }
        e
    }
}
