//! Delivers the outbox: sends the oldest queued record to `option radius_server` over UDP,
//! one at a time, and deletes it only on a valid Accounting-Response. Without an answer the
//! same record is sent again after a timeout that doubles up to a limit, each time with a new
//! Identifier and the Acct-Delay-Time of that moment (RFC 5080 §2.2.1: a changed packet gets a
//! new Identifier), for as long as it takes: the server down for a day, or the daemon
//! restarted, only delays delivery. A late answer to an earlier send of the same record is
//! taken as well (it stops the retransmissions; the server may still log both sends — at
//! least once, as RFC 2866 accounting is). Not: what is queued (`sessions::radius`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::packet::{accounting_request, check_response, MAX_PACKET};
use crate::sessions::Sessions;

/// How long to wait for an answer: `first` after the first send, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub first: Duration,
    pub max: Duration,
    /// How often to look at the outbox when nothing wakes the sender.
    pub idle: Duration,
}

impl Default for Timing {
    /// RFC 5080 §2.2.1's initial 2 s and its 16 s between sends at most, kept up for as long
    /// as the server is away (a server back is heard from within 16 s).
    fn default() -> Timing {
        Timing {
            first: Duration::from_secs(2),
            max: Duration::from_secs(16),
            idle: Duration::from_secs(5),
        }
    }
}

fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn socket_for(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).await?;
    // Connected: the kernel passes only datagrams from the server's address and port.
    s.connect(server).await?;
    Ok(s)
}

/// Sends the outbox for as long as the daemon runs (see the module comment).
pub async fn run(sessions: Rc<RefCell<Sessions>>, timing: Timing) {
    let wake = sessions.borrow().radius_wake.clone();
    let mut id: u8 = {
        let mut b = [0u8; 1];
        let _ = getrandom::fill(&mut b);
        b[0]
    };
    let mut sock: Option<(SocketAddr, UdpSocket)> = None;
    // The record being sent and the wait before its next send.
    let mut current: Option<(i64, Duration)> = None;
    let mut away_logged = false;
    // The sends of the current record so far (at most the last 8).
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let next = {
            let s = sessions.borrow();
            // Accounting off: the outbox is not even read.
            s.cfg
                .radius()
                .and_then(|(server, secret)| match s.store.outbox_oldest() {
                    Ok(rec) => rec.map(|rec| (server, secret.to_vec(), rec)),
                    Err(e) => {
                        eprintln!("wifiposd: cannot read the RADIUS outbox: {e}");
                        None
                    }
                })
        };
        let Some((server, secret, rec)) = next else {
            let _ = tokio::time::timeout(timing.idle, wake.notified()).await;
            continue;
        };
        if sock.as_ref().is_none_or(|(a, _)| *a != server) {
            match socket_for(server).await {
                Ok(s) => sock = Some((server, s)),
                Err(e) => {
                    eprintln!("wifiposd: cannot open a socket to the RADIUS server {server}: {e}");
                    tokio::time::sleep(timing.max).await;
                    continue;
                }
            }
        }
        let Some((_, udp)) = sock.as_ref() else {
            continue;
        };
        let wait = match current {
            Some((rid, w)) if rid == rec.id => w,
            _ => {
                earlier.clear();
                timing.first
            }
        };
        id = id.wrapping_add(1);
        let delay = (wall_now() - rec.created_at).clamp(0, u32::MAX as i64) as u32;
        let req = accounting_request(id, &rec.attributes, delay, &secret);
        // Counted up to 10 (a day's outage would otherwise write the flash every 16 s).
        if rec.tries < 10 {
            if let Err(e) = sessions.borrow_mut().store.outbox_tried(rec.id) {
                eprintln!("wifiposd: cannot update the RADIUS outbox: {e}");
            }
        }
        // A send error (no route while the uplink is down) counts as no answer.
        let sent = udp.send(&req).await.is_ok();
        if !sent {
            // Wait as for an answer: no busy loop (and no write per try) while there is no
            // route.
            tokio::time::sleep(wait).await;
        }
        if earlier.len() == 8 {
            earlier.remove(0);
        }
        earlier.push(req);
        let answered = sent
            && tokio::time::timeout(wait, async {
                loop {
                    match udp.recv(&mut buf).await {
                        // A late answer to an earlier send of this record counts too: the
                        // server has it.
                        Ok(n) => {
                            let answer = &buf[..n];
                            let to = earlier
                                .iter()
                                .rev()
                                .find(|r| n >= 2 && r[1] == answer[1])
                                .unwrap_or(&earlier[earlier.len() - 1]);
                            match check_response(answer, to, &secret) {
                                Ok(()) => return true,
                                Err(e) => eprintln!("wifiposd: RADIUS answer ignored: {e}"),
                            }
                        }
                        // ICMP port unreachable and the like: the server is not there.
                        Err(_) => {
                            tokio::time::sleep(wait).await;
                            return false;
                        }
                    }
                }
            })
            .await
            .unwrap_or(false);
        if answered {
            if let Err(e) = sessions.borrow_mut().store.outbox_done(rec.id) {
                eprintln!("wifiposd: cannot update the RADIUS outbox: {e}");
            }
            if away_logged {
                away_logged = false;
                eprintln!("wifiposd: the RADIUS server {server} answers again");
            }
            current = None;
        } else {
            if rec.tries >= 2 && !away_logged {
                away_logged = true;
                eprintln!(
                    "wifiposd: the RADIUS server {server} does not answer; accounting waits in the outbox"
                );
            }
            current = Some((rec.id, (wait * 2).min(timing.max)));
        }
    }
}
