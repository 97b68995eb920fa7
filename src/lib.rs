//! wifipos: sell Wi-Fi through the point of sale.
//!
//! The till signs a voucher (Ed25519) and prints it as a QR code; the router verifies it offline
//! and lets the paying device's MAC through an nftables set whose per-element timeout ends the
//! session in the kernel. See `README.md` for the tour.
//!
//! Everything testable lives in this library; the binaries in `src/bin/` only wire modules
//! together. Features keep each binary lean: `pos` (signing, QR rendering) for `wifipos`,
//! `router` (portal, store, firewall) for `wifiposd`. Pure modules (`voucher`, `keys`,
//! `duration`, `policy`, `config`) do no I/O and read no clock.

#[cfg(any(feature = "pos", feature = "router"))]
pub mod cli;
pub mod config;
pub mod duration;
pub mod keys;
pub mod mac;
pub mod policy;
pub mod units;
pub mod voucher;

#[cfg(feature = "pos")]
pub mod receipt;

#[cfg(feature = "router")]
pub mod admin;
#[cfg(feature = "router")]
pub mod conntrack;
#[cfg(feature = "router")]
pub mod control;
#[cfg(feature = "router")]
pub mod daemon;
#[cfg(feature = "router")]
pub mod doctor;
#[cfg(feature = "router")]
pub mod ends;
#[cfg(feature = "router")]
pub mod fdb;
#[cfg(feature = "router")]
pub mod firewall;
#[cfg(feature = "router")]
pub mod ifaddr;
#[cfg(feature = "router")]
pub mod limits;
#[cfg(feature = "router")]
pub mod neigh;
#[cfg(feature = "router")]
pub mod nl;
#[cfg(feature = "router")]
pub mod portal;
#[cfg(feature = "router")]
pub mod radius;
#[cfg(feature = "router")]
pub mod sessions;
#[cfg(feature = "router")]
pub mod store;
