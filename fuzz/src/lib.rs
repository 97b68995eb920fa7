//! What the fuzz targets share: the test-vector till key (tests/fixtures/voucher-vectors.json,
//! seed 01..20), a keyring trusting it, and gates for the portal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use ed25519_dalek::SigningKey;
use wifipos::firewall::MemoryFirewall;
use wifipos::keys::Keyring;
use wifipos::mac::Mac;
use wifipos::portal::pages::Lang;
use wifipos::portal::{Access, Gate, Portal, PortalConfig, RedeemError};
use wifipos::sessions::Sessions;
use wifipos::store::{Durability, Store};

/// The till key of the shared voucher vectors (its private seed is public: test use only).
pub fn signing_key() -> SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    SigningKey::from_bytes(&seed)
}

pub fn keyring() -> Keyring {
    Keyring::new([signing_key().verifying_key()])
}

pub const PORTAL_URL: &str = "http://10.20.0.1:2050";

pub fn portal_config() -> PortalConfig {
    PortalConfig {
        venue: "Café <Fuzz> & \"Co\"".into(),
        portal_url: PORTAL_URL.into(),
        default_lang: Lang::En,
        // High, so the fuzzer keeps reaching redemption instead of the 429 page.
        attempts_per_minute: 1_000_000,
    }
}

/// A gate that verifies vouchers against [`keyring`] and remembers devices in memory.
#[derive(Default)]
pub struct VerifyGate {
    keyring: Option<Keyring>,
    devices: HashMap<Mac, Access>,
}

impl Gate for VerifyGate {
    fn redeem(&mut self, input: &str, mac: Mac, _now: i64) -> Result<Access, RedeemError> {
        let keyring = self.keyring.get_or_insert_with(keyring);
        let v = wifipos::voucher::verify(input, keyring).map_err(RedeemError::Refused)?;
        let a = Access {
            seconds_left: u64::from(v.duration_s),
            devices: 1,
            max_devices: v.max_devices,
            bytes_left: None,
        };
        self.devices.insert(mac, a);
        Ok(a)
    }

    fn access(&mut self, mac: Mac, _now: i64) -> Option<Access> {
        self.devices.get(&mac).copied()
    }
}

/// The daemon's own gate: voucher verification, an in-memory SQLite store (the real schema
/// and transactions) and the in-memory firewall.
pub fn sessions() -> Sessions {
    let store = Store::open_with(std::path::Path::new(":memory:"), Durability::Normal)
        .expect("in-memory store");
    let mut s = Sessions::new(
        store,
        Box::new(MemoryFirewall::new()),
        keyring(),
        wifipos::config::Config::default(),
    );
    s.restore(0).expect("in-memory table");
    s
}

pub fn portal<G: Gate>(gate: G) -> Rc<RefCell<Portal<G>>> {
    Rc::new(RefCell::new(Portal::new(portal_config(), gate)))
}
