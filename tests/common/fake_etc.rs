//! A fake /etc for `wifiposd doctor` in the lab (tests/doctor.rs, tests/luci_rpcd.rs): the
//! cafe's config/wifipos and the guide's router: fw4 with the guest zone (input REJECT, flow
//! offloading on), the br-guest interface (no HTTPS, so no DHCP option 114) and NTP; the portal rule optional.
#![allow(dead_code)]

use std::path::Path;

use crate::cafe::Cafe;

/// /etc/config/firewall without wifipos's portal rule.
pub const FIREWALL: &str = "config defaults\n\toption input 'REJECT'\n\toption output 'ACCEPT'\n\toption forward 'REJECT'\n\toption synflood_protect '1'\n\toption flow_offloading '1'\n\n\
config zone\n\toption name 'guest'\n\tlist network 'guest'\n\toption input 'REJECT'\n\toption output 'ACCEPT'\n\toption forward 'REJECT'\n\n\
config forwarding\n\toption src 'guest'\n\toption dest 'wan'\n\n\
config rule\n\toption name 'Allow-DNS-Guest'\n\toption src 'guest'\n\toption dest_port '53'\n\toption proto 'tcp udp'\n\toption target 'ACCEPT'\n\n\
config rule\n\toption name 'Allow-DHCP-Guest'\n\toption src 'guest'\n\toption dest_port '67'\n\toption proto 'udp'\n\toption family 'ipv4'\n\toption target 'ACCEPT'\n";

/// The rule `wifipos-firewall add` writes.
pub const PORTAL_RULE: &str = "\nconfig rule 'wifipos_portal'\n\toption name 'Allow-wifipos-portal'\n\toption src 'guest'\n\toption proto 'tcp'\n\toption dest_port '2050'\n\toption target 'ACCEPT'\n";

pub const NETWORK: &str = "config device\n\toption type 'bridge'\n\toption name 'br-guest'\n\n\
config interface 'guest'\n\toption device 'br-guest'\n\toption proto 'static'\n\toption ipaddr '10.20.0.1'\n\toption netmask '255.255.255.0'\n";

pub const DHCP: &str = "config dhcp 'guest'\n\toption interface 'guest'\n\toption start '100'\n\toption limit '150'\n\toption leasetime '1h'\n";

/// Writes ETC/config/{wifipos,firewall,network,dhcp,system}.
pub fn write_etc(cafe: &Cafe, etc: &Path, firewall: &str) {
    let dir = etc.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(cafe.path("wifipos.conf"), dir.join("wifipos")).unwrap();
    std::fs::write(dir.join("firewall"), firewall).unwrap();
    std::fs::write(dir.join("network"), NETWORK).unwrap();
    std::fs::write(dir.join("dhcp"), DHCP).unwrap();
    std::fs::write(
        dir.join("system"),
        "config timeserver 'ntp'\n\toption enabled '1'\n",
    )
    .unwrap();
}
