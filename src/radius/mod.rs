//! RADIUS to a central server such as FreeRADIUS: the packets (`packet`, pure), the task that
//! delivers the store's accounting outbox (RFC 2866, `sender`), the Access-Request of a
//! redemption under central authorization (RFC 2865, `auth`), the listener for the server's
//! Disconnect and CoA requests (RFC 5176, `das`). What is queued and when is
//! `sessions::radius`; which redemptions are asked and what the answer does is
//! `sessions::gate`; the outbox itself is `store::outbox`.
//!
//! Imports run one way: `sessions` → `packet`, `auth` (pure but for its own socket: `mac`,
//! MD5, tokio); `sender` → `sessions`, `store` (through `Sessions`), `packet`; `das` →
//! `admin` (for kick, revoke and a voucher's end), `sessions`, `packet`; only `daemon` starts
//! `sender` and `das`.

pub mod auth;
pub mod das;
pub mod packet;
pub mod sender;

pub use packet::{Record, StatusType, TerminateCause};
