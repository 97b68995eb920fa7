//! Arbitrary bytes as a raw HTTP/1.1 request stream into the portal's real hyper connection
//! code (`portal::serve_connection`, what `portal::serve` runs per accepted socket) over an
//! in-memory pipe, with the daemon's own gate (`Sessions`: verification, SQLite in memory, the
//! in-memory firewall). Never panics; the server answers (something that starts like an HTTP/1
//! response) or closes, and always closes within the connection lifetime (tokio's clock is
//! paused and jumps ahead when idle, so timeouts cost nothing).
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wifipos::mac::Mac;
use wifipos::neigh::Fixed;
use wifipos::portal::{self, Limits, Portal};
use wifipos::sessions::Sessions;

struct World {
    rt: tokio::runtime::Runtime,
    portal: Rc<RefCell<Portal<Sessions>>>,
}

thread_local! {
    static WORLD: World = World {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime"),
        portal: wifipos_fuzz::portal(wifipos_fuzz::sessions()),
    };
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        let limits = Limits::default();
        let bound = limits.connection_lifetime + Duration::from_secs(1);
        let peer: SocketAddr = "10.20.0.23:41000".parse().expect("address");
        let local = tokio::task::LocalSet::new();
        let out = w.rt.block_on(local.run_until(async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let served = tokio::task::spawn_local(portal::serve_connection(
                server,
                peer,
                w.portal.clone(),
                Fixed(Mac([2, 0, 0, 0, 0, 1])),
                limits,
            ));
            let (mut rd, mut wr) = tokio::io::split(client);
            let mut out = Vec::new();
            let talk = async {
                tokio::join!(
                    async {
                        // The server may close before it read everything.
                        let _ = wr.write_all(data).await;
                        let _ = wr.shutdown().await;
                    },
                    async {
                        let _ = rd.read_to_end(&mut out).await;
                    }
                )
            };
            let closed = tokio::time::timeout(bound, talk).await;
            assert!(closed.is_ok(), "the connection outlived its lifetime");
            served.await.expect("the connection task panicked");
            out
        }));
        if !out.is_empty() {
            assert!(
                out.starts_with(b"HTTP/1."),
                "not an HTTP answer: {:?}",
                &out[..out.len().min(64)]
            );
        }
    });
});
