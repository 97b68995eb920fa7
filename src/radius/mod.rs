//! RADIUS accounting (RFC 2866) to a central server such as FreeRADIUS: the packets
//! (`packet`, pure) and the task that delivers the store's outbox (`sender`). What is queued
//! and when is `sessions::radius`; the outbox itself is `store::outbox`.
//!
//! Imports run one way: `sessions` → `packet` (pure: `mac` and MD5 only); `sender` →
//! `sessions`, `store` (through `Sessions`), `packet`; only `daemon` starts `sender`.

pub mod packet;
pub mod sender;

pub use packet::{Record, StatusType, TerminateCause};
