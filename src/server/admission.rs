//! Admission of connections in the HTTP stage (accepted, not upgraded to a WebSocket): a cap in
//! total and per client address, below the open-file limit, with a few spare places where only
//! the health probes are served, so that a flood of connections (a stalled body on each) can
//! neither take every file descriptor nor blind the load balancer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Spare places beyond the caps, for connections that get only `/healthz` and `/readyz` (and a
/// 503 for anything else) with a short header deadline and no body.
pub const OVERFLOW_PLACES: usize = 64;
/// Spare places one client address may hold at once.
pub const OVERFLOW_PLACES_PER_IP: usize = 4;
/// File descriptors kept aside for everything but client connections: the store (sled's files,
/// uploads being written), the listeners, the control socket, TLS files, the log.
pub const RESERVED_FDS: u64 = 128;
/// The HTTP cap is never lowered below this, whatever the open-file limit says.
pub const MIN_HTTP_CONNECTIONS: usize = 16;

/// How a connection was admitted.
pub enum Admitted {
    /// Served as usual.
    Full(Ticket),
    /// Over a cap: health probes only.
    Overflow(Ticket),
    /// Over the spare places too: closed at once.
    Refused,
}

#[derive(Default)]
struct Counts {
    total: usize,
    overflow: usize,
    /// (connections served as usual, overflow connections) per address.
    by_ip: HashMap<IpAddr, (usize, usize)>,
}

/// The counts of connections in the HTTP stage. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize) -> Admission {
        Admission {
            counts: Arc::default(),
            max_total,
            max_per_ip,
        }
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Admits a connection from `ip`; the place is held until the ticket is dropped.
    pub fn admit(&self, ip: IpAddr) -> Admitted {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total = counts.total;
        let overflow = counts.overflow;
        let entry = counts.by_ip.entry(ip).or_insert((0, 0));
        let overflowing = if total < self.max_total && entry.0 < self.max_per_ip {
            entry.0 += 1;
            false
        } else if overflow < OVERFLOW_PLACES && entry.1 < OVERFLOW_PLACES_PER_IP {
            entry.1 += 1;
            true
        } else {
            if *entry == (0, 0) {
                counts.by_ip.remove(&ip);
            }
            return Admitted::Refused;
        };
        if overflowing {
            counts.overflow += 1;
        } else {
            counts.total += 1;
        }
        let ticket = Ticket {
            counts: self.counts.clone(),
            ip,
            overflow: overflowing,
        };
        if overflowing {
            Admitted::Overflow(ticket)
        } else {
            Admitted::Full(ticket)
        }
    }
}

/// A place held by one connection.
pub struct Ticket {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
    overflow: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.overflow {
            counts.overflow = counts.overflow.saturating_sub(1);
        } else {
            counts.total = counts.total.saturating_sub(1);
        }
        if let Some(entry) = counts.by_ip.get_mut(&self.ip) {
            if self.overflow {
                entry.1 = entry.1.saturating_sub(1);
            } else {
                entry.0 = entry.0.saturating_sub(1);
            }
            if *entry == (0, 0) {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The HTTP cap that fits the open-file limit `fd_limit` beside `ws_max` WebSockets, the spare
/// places and [`RESERVED_FDS`]: `configured` when it fits. Else what is left beside `ws_max`, but
/// never less than an eighth of the descriptors there are for connections (nor than
/// [`MIN_HTTP_CONNECTIONS`]): a `ws.max_connections` set near the limit must not shrink the HTTP
/// stage to a handful, or every reconnect storm would be refused; only when the WebSockets and
/// the HTTP stage are both near their caps at once can `accept` run short. The second value says
/// whether everything configured fits.
pub fn http_cap(fd_limit: u64, ws_max: usize, configured: usize) -> (usize, bool) {
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let needed = as_u64(ws_max)
        .saturating_add(as_u64(configured))
        .saturating_add(as_u64(OVERFLOW_PLACES))
        .saturating_add(RESERVED_FDS);
    if needed <= fd_limit {
        return (configured, true);
    }
    let for_connections = fd_limit
        .saturating_sub(as_u64(OVERFLOW_PLACES))
        .saturating_sub(RESERVED_FDS);
    let left = for_connections
        .saturating_sub(as_u64(ws_max))
        .max(for_connections / 8);
    let cap = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .clamp(MIN_HTTP_CONNECTIONS, configured.max(MIN_HTTP_CONNECTIONS));
    (cap, false)
}

/// The process's open-file limit, raised first from its soft value to its hard one (what a
/// server that holds many sockets needs; systemd's default soft limit is 1024). `None` when it
/// cannot be read.
pub fn open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return Some(maximum);
        }
    }
    // `None` in a field means unlimited.
    Some(limit.current.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_total_and_per_address_with_spare_places_for_probes() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = admission.admit(a);
        let second = admission.admit(a);
        assert!(matches!(first, Admitted::Full(_)));
        assert!(matches!(second, Admitted::Full(_)));
        // a is at its own cap, b is not.
        assert!(matches!(admission.admit(a), Admitted::Overflow(_)));
        let third = admission.admit(b);
        assert!(matches!(third, Admitted::Full(_)));
        // The total is reached: b overflows too.
        let spare: Vec<Admitted> = (0..OVERFLOW_PLACES_PER_IP)
            .map(|_| admission.admit(b))
            .collect();
        assert!(spare.iter().all(|s| matches!(s, Admitted::Overflow(_))));
        assert!(matches!(admission.admit(b), Admitted::Refused));
        drop(spare);
        drop(first);
        assert!(matches!(admission.admit(a), Admitted::Full(_)));
        let counts = admission.counts.lock().expect("lock");
        assert_eq!(
            counts.overflow, 0,
            "every dropped ticket gave its place back"
        );
    }

    #[test]
    fn the_http_cap_fits_the_open_file_limit() {
        assert_eq!(http_cap(65_536, 10_000, 4096), (4096, true));
        let (cap, fits) = http_cap(8192, 7000, 4096);
        assert!(!fits);
        assert_eq!(
            cap,
            8192 - 7000 - OVERFLOW_PLACES - usize::try_from(RESERVED_FDS).expect("small")
        );
        // WebSockets configured up to the limit leave the HTTP stage an eighth, not nothing.
        let eighth = (1024 - OVERFLOW_PLACES - usize::try_from(RESERVED_FDS).expect("small")) / 8;
        assert_eq!(http_cap(1024, 10_000, 4096), (eighth, false));
        assert_eq!(http_cap(20_000, 20_000, 4096).0, (20_000 - 64 - 128) / 8);
        assert_eq!(http_cap(200, 10_000, 4096), (MIN_HTTP_CONNECTIONS, false));
        assert_eq!(http_cap(u64::MAX, 10_000, 4096), (4096, true));
    }
}
