//! Admin answers as text for people (the `--json` output is the reply itself). Pure: a reply
//! in, lines out; times in UTC.

use super::{Done, SessionLine, Status, Vouchers};
use crate::duration::{format as human, utc_date};
use crate::store::Event;
use crate::units::human_bytes;

pub fn status(s: &Status) -> String {
    let t = &s.last_24h;
    let mut out = format!(
        "wifiposd {}, up {}; clock {} ({})\n\
         Venue: {} — portal {}{} on {}\n\
         Firewall table: {}; {} device(s) allowed in the kernel\n\
         Sessions: {} device(s) with time left; {} trusted, {} blocked device(s)\n\
         Trusted till keys: {}\n\
         Last 24 h: {} voucher(s) sold, {} device(s), {} minutes, {} redemption(s), {} refusal(s)\n",
        s.version,
        human(s.uptime_s),
        if s.clock_trusted {
            "set"
        } else {
            "NOT SET (waiting for NTP; redemption deadlines not enforced)"
        },
        utc_date(s.now),
        s.venue,
        s.portal_url,
        s.portal_address_from
            .as_deref()
            .map_or(String::new(), |i| format!(" (address from {i})")),
        s.guest_iface,
        s.table,
        s.allowed_in_kernel,
        s.sessions,
        s.trusted_macs,
        s.blocked_macs,
        if s.keys.is_empty() {
            "none (every voucher is refused)".to_owned()
        } else {
            s.keys.join(", ")
        },
        t.vouchers_redeemed,
        t.devices,
        t.minutes_sold,
        t.redemptions,
        t.refusals,
    );
    out.push_str(&format!(
        "Traffic of devices with time left: {} down, {} up{}; {} device(s) speed-limited\n",
        human_bytes(s.traffic.0),
        human_bytes(s.traffic.1),
        if s.counts_downloads {
            ""
        } else {
            " (DOWNLOADS NOT COUNTED: the kernel has no netdev egress hook, needs 5.16 or later)"
        },
        s.speed_limited
    ));
    if let Some(r) = &s.radius {
        out.push_str(&format!(
            "RADIUS accounting to {}: {} record(s) waiting in the outbox\n",
            r.server, r.waiting
        ));
    }
    if let Some((server, ms)) = &s.radius_auth {
        out.push_str(&format!(
            "RADIUS authorization by {server}: new devices wait up to {ms} ms for its answer, then the router decides\n"
        ));
    }
    if let Some((port, from)) = &s.radius_coa {
        out.push_str(&format!(
            "RADIUS Disconnect/CoA taken on UDP port {port} from {}\n",
            from.join(", ")
        ));
    }
    for c in &s.clones {
        out.push_str(&format!(
            "CLONE: {c} (one MAC on two bridge ports: `wifiposd block MAC` to shut it out)\n"
        ));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn sessions(list: &[SessionLine]) -> String {
    if list.is_empty() {
        return "No device has time left.\n".into();
    }
    let rows = list
        .iter()
        .map(|l| {
            vec![
                l.session.mac.to_string(),
                format!("{}:{}", l.session.key_id, l.session.serial),
                l.session.purchase_ref.clone(),
                utc_date(l.session.ends_at),
                human(l.remaining_s.max(0) as u64),
                l.kernel_s.map_or("MISSING".into(), human),
                format!(
                    "{} / {}",
                    human_bytes(l.session.down_bytes),
                    human_bytes(l.session.up_bytes)
                ),
                l.session.data_cap.map_or("-".into(), |cap| {
                    format!(
                        "{} of {}",
                        human_bytes(l.session.voucher_used_bytes),
                        human_bytes(cap)
                    )
                }),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "DEVICE",
            "VOUCHER",
            "SALE",
            "ENDS",
            "LEFT",
            "IN KERNEL",
            "DOWN / UP",
            "VOUCHER DATA",
        ],
        rows,
    );
    out.push_str(&format!("{} device(s)\n", list.len()));
    out
}

pub fn vouchers(v: &Vouchers) -> String {
    if v.vouchers.is_empty() {
        return "No voucher has been used yet.\n".into();
    }
    let rows = v
        .vouchers
        .iter()
        .map(|x| {
            let state = match (x.revoked_at, x.ends_at) {
                (Some(_), _) => "revoked".to_owned(),
                (None, _) if x.data_used_up_at.is_some() => "data used up".to_owned(),
                (None, None) => "not used".to_owned(),
                (None, Some(e)) if e > v.now => format!("{} left", human((e - v.now) as u64)),
                (None, Some(_)) => "ended".to_owned(),
            };
            vec![
                format!("{}:{}", x.key_id, x.serial),
                x.purchase_ref.clone(),
                human(x.duration_s.max(0) as u64),
                x.first_redeemed_at.map_or("-".into(), utc_date),
                state,
                format!("{}/{}", x.devices.len(), x.max_devices),
                match x.data_cap {
                    Some(cap) => format!("{} of {}", human_bytes(x.used_bytes), human_bytes(cap)),
                    None => human_bytes(x.used_bytes),
                },
                rates(x.down_kbit, x.up_kbit),
                x.devices
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(
        &[
            "VOUCHER",
            "SALE",
            "BOUGHT",
            "FIRST USED",
            "STATE",
            "USED",
            "DATA",
            "SPEED",
            "DEVICES",
        ],
        rows,
    )
}

/// Speed limits as `2 Mbit/s down, 512 kbit/s up`, or `-`.
fn rates(down: Option<u32>, up: Option<u32>) -> String {
    let r = |k: u32| {
        if k >= 1_000 && k % 1_000 == 0 {
            format!("{} Mbit/s", k / 1_000)
        } else {
            format!("{k} kbit/s")
        }
    };
    match (down, up) {
        (None, None) => "-".into(),
        (Some(d), None) => format!("{} down", r(d)),
        (None, Some(u)) => format!("{} up", r(u)),
        (Some(d), Some(u)) => format!("{} down, {} up", r(d), r(u)),
    }
}

pub fn events(list: &[Event]) -> String {
    if list.is_empty() {
        return "No events in that time.\n".into();
    }
    let rows = list
        .iter()
        .map(|e| {
            vec![
                utc_date(e.at),
                e.kind.clone(),
                e.mac.clone().unwrap_or_else(|| "-".into()),
                match (&e.key_id, e.serial) {
                    (Some(k), Some(s)) => format!("{k}:{s}"),
                    _ => "-".into(),
                },
                e.detail.clone(),
            ]
        })
        .collect();
    table(&["TIME", "EVENT", "DEVICE", "VOUCHER", "DETAIL"], rows)
}

pub fn done(d: &Done) -> String {
    format!("{}\n", d.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB"],
            vec![vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }
}
