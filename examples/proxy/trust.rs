//! Which peers may tell the proxy who the client is.
//!
//! A proxy that sits behind another proxy (a CDN, a TLS terminator) sees
//! that proxy's address on every connection. The real client is in
//! `X-Forwarded-For`, but anyone can write that header, so it is believed
//! only when the peer is in a trusted network, as nginx's `set_real_ip_from`
//! does.

use std::net::IpAddr;

use hyper::header::HeaderMap;
use ipnet::IpNet;

/// The header a trusted peer names the client in.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// Networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustList {
    nets: Vec<IpNet>,
}

impl TrustList {
    /// Parses CIDRs (`127.0.0.0/8`, `::1/128`) or bare addresses.
    ///
    /// # Errors
    ///
    /// The first entry that is neither, quoted.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustList, String> {
        let nets = entries
            .iter()
            .map(|entry| parse_net(entry.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(TrustList { nets })
    }

    /// True when `ip` lies in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer itself, or, when the peer is trusted,
    /// the rightmost address of `X-Forwarded-For` that is not trusted (the
    /// leftmost one when every hop is trusted), like nginx's
    /// `real_ip_recursive on`. The walk stops at the first entry that is
    /// not an address, keeping the last address it believed.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

fn parse_net(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{entry}' is neither a CIDR (10.0.0.0/8) nor an IP address"))
}
