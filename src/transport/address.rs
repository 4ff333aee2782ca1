//! Which address a process listens on, and which it advertises to its peers: an address they
//! can reach, chosen as MPI users know it (`btl_tcp_if_include`, `NCCL_SOCKET_IFNAME`).
//!
//! - `JUXMEM_LISTEN` with a specific address: listen there and advertise it.
//! - `JUXMEM_LISTEN` on all interfaces (`0.0.0.0:PORT`): listen there, and advertise the address
//!   `JUXMEM_INTERFACE` names, or else the one that routes toward the cluster's manager.
//! - No `JUXMEM_LISTEN`: listen on (and advertise) that same chosen address, on any free port.
//! - With neither setting and no manager to route toward (the first manager of a federation),
//!   the chosen address is the one of the host's default route (loopback if there is none).
//!   `juxmem launch` keeps its local federation on loopback by listening on `127.0.0.1`.
//! - `JUXMEM_INTERFACE` is a comma-separated list of interface names (`eth0`, `ib0`) or IPv4
//!   networks (`198.18.0.0/15`); the first entry that matches an address of this host wins.
//!
//! The unspecified address is never advertised, and neither is loopback to peers that are not on
//! this host: that is a clear error at start-up, not a silent failure later.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use crate::error::{Error, Result};

/// Where to listen and what to tell peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address to bind.
    pub bind: SocketAddr,
    /// The address peers are told (same port once bound: see [`Endpoint::bound`]).
    pub advertise: IpAddr,
}

impl Endpoint {
    /// The address to advertise once the listener got its port.
    pub fn bound(&self, local: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.advertise, local.port())
    }
}

/// This host's IPv4 addresses, by interface name.
pub fn interfaces() -> Result<Vec<(String, Ipv4Addr)>> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return Err(Error::Network(format!(
                "cannot list this host's network interfaces: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut p = list;
        while !p.is_null() {
            let ifa = &*p;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, ip));
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    Ok(out)
}

/// Whether `ip` is in the IPv4 network `net` (`a.b.c.d/len`).
fn in_network(ip: Ipv4Addr, net: &str) -> Option<bool> {
    let (base, len) = net.split_once('/')?;
    let base: Ipv4Addr = base.trim().parse().ok()?;
    let len: u32 = len.trim().parse().ok().filter(|&l| l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(u32::from(ip) & mask == u32::from(base) & mask)
}

/// The first address of `interfaces` that an entry of `spec` names (entries in order).
pub fn pick(spec: &str, interfaces: &[(String, Ipv4Addr)]) -> Result<Ipv4Addr> {
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let found = if entry.contains('/') {
            if in_network(Ipv4Addr::UNSPECIFIED, entry).is_none() {
                return Err(Error::InvalidArgument(format!(
                    "JUXMEM_INTERFACE entry {entry:?} is not an IPv4 network (e.g. 198.18.0.0/15)"
                )));
            }
            interfaces
                .iter()
                .find(|(_, ip)| in_network(*ip, entry) == Some(true))
        } else {
            interfaces.iter().find(|(name, _)| name == entry)
        };
        if let Some((_, ip)) = found {
            return Ok(*ip);
        }
    }
    let have: Vec<String> = interfaces
        .iter()
        .map(|(n, ip)| format!("{n} {ip}"))
        .collect();
    Err(Error::InvalidArgument(format!(
        "JUXMEM_INTERFACE={spec:?} matches no address of this host (it has: {})",
        have.join(", ")
    )))
}

/// An address outside any local network (TEST-NET-3, RFC 5737): routing toward it finds the
/// default route. Nothing is ever sent there.
const DEFAULT_ROUTE_PROBE: &str = "203.0.113.1:9";

/// The local address the kernel would use to reach `peer` (no packet is sent).
pub fn route_toward(peer: &str) -> Result<IpAddr> {
    let target = peer
        .to_socket_addrs()
        .map_err(|e| Error::Network(format!("cannot resolve {peer}: {e}")))?
        .next()
        .ok_or_else(|| Error::Network(format!("{peer} resolves to nothing")))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let s =
        UdpSocket::bind(bind).map_err(|e| Error::Network(format!("routing toward {peer}: {e}")))?;
    s.connect(target)
        .map_err(|e| Error::Network(format!("no route toward {peer}: {e}")))?;
    Ok(s.local_addr()
        .map_err(|e| Error::Network(format!("routing toward {peer}: {e}")))?
        .ip())
}

/// Decides where to listen and what to advertise (see the module's documentation). `toward` is
/// a peer this process must be reachable from (its cluster's manager), if any.
pub fn choose(
    listen: Option<&str>,
    interface: Option<&str>,
    toward: Option<&str>,
) -> Result<Endpoint> {
    let chosen = || -> Result<IpAddr> {
        match (interface, toward) {
            (Some(spec), _) => Ok(IpAddr::V4(pick(spec, &interfaces()?)?)),
            (None, Some(peer)) => route_toward(peer),
            // Nobody to route toward (the first manager): the host's default route, the
            // address other hosts most likely reach; loopback on a host with no route out.
            (None, None) => {
                Ok(route_toward(DEFAULT_ROUTE_PROBE).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
            }
        }
    };
    let endpoint = match listen {
        Some(l) => {
            let bind = l
                .to_socket_addrs()
                .map_err(|e| Error::InvalidArgument(format!("JUXMEM_LISTEN={l:?}: {e}")))?
                .next()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("JUXMEM_LISTEN={l:?}: no address"))
                })?;
            let advertise = if bind.ip().is_unspecified() {
                chosen()?
            } else {
                bind.ip()
            };
            Endpoint { bind, advertise }
        }
        None => {
            let ip = chosen()?;
            Endpoint {
                bind: SocketAddr::new(ip, 0),
                advertise: ip,
            }
        }
    };
    if let Some(peer) = toward {
        let remote = route_toward(peer)
            .map(|ip| !ip.is_loopback())
            .unwrap_or(false);
        if remote && endpoint.advertise.is_loopback() {
            return Err(Error::InvalidArgument(format!(
                "this process would advertise {} to peers on other hosts (its manager is at \
                 {peer}), which they cannot reach: set JUXMEM_INTERFACE (an interface or network \
                 of this host) or JUXMEM_LISTEN (a specific address)",
                endpoint.advertise
            )));
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<(String, Ipv4Addr)> {
        vec![
            ("lo".into(), Ipv4Addr::LOCALHOST),
            ("eth0".into(), Ipv4Addr::new(10, 1, 2, 3)),
            ("ib0".into(), Ipv4Addr::new(198, 18, 0, 7)),
        ]
    }

    #[test]
    fn interfaces_are_picked_by_name_or_network_in_order() {
        assert_eq!(pick("ib0", &host()).unwrap(), Ipv4Addr::new(198, 18, 0, 7));
        assert_eq!(
            pick("198.18.0.0/15", &host()).unwrap(),
            Ipv4Addr::new(198, 18, 0, 7)
        );
        assert_eq!(
            pick("wlan0, 10.0.0.0/8, ib0", &host()).unwrap(),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        let e = pick("wlan0", &host()).unwrap_err();
        assert!(
            e.to_string().contains("matches no address") && e.to_string().contains("eth0 10.1.2.3")
        );
        assert_eq!(
            pick("10.0.0/8", &host()).unwrap_err().code(),
            crate::ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn all_interfaces_are_never_advertised() {
        let e = choose(Some("0.0.0.0:0"), None, Some("127.0.0.1:9")).unwrap();
        assert!(e.bind.ip().is_unspecified());
        assert_eq!(e.advertise, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let e = choose(None, None, Some("127.0.0.1:9")).unwrap();
        assert_eq!(e.bind.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let e = choose(Some("127.0.0.1:0"), Some("lo"), None).unwrap();
        assert_eq!(e.advertise, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(choose(Some("not an address"), None, None).is_err());
    }
}
