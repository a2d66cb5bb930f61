//! Bounds on what remote servers may register with the MUC module.
//!
//! Anyone on the network can send `<enable/>` to a MUC domain from JIDs of
//! their own server: `u1@evil.example` … `uN@evil.example`. Without bounds
//! that grows the store without end, and under `muc_push_policy = "all"`
//! turns one room message into a publish per registration to a victim app
//! server. So, for users of other servers: at most so many users with
//! registrations per domain and in all, at most so many enables per domain
//! per minute, or none at all (`local_only`). Users of this server's own
//! hosts are never counted.

use crate::error::StanzaError;
use std::collections::HashMap;

/// The bounds (options of the MUC module, see the README).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Only users of this server's own hosts may register.
    pub local_only: bool,
    /// Users of one remote domain with registrations.
    pub per_domain: usize,
    /// Remote users with registrations, all domains together.
    pub remote_total: usize,
    /// Enables accepted per remote domain per minute.
    pub enables_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            local_only: false,
            per_domain: 100,
            remote_total: 10_000,
            enables_per_minute: 10,
        }
    }
}

/// Most remote domains whose enable rate is remembered (the oldest
/// windows are forgotten first; a forgotten one just starts afresh).
const MAX_RATE_DOMAINS: usize = 4096;

/// Remote users with registrations, by domain, and recent enables.
pub struct RemoteQuota {
    limits: Limits,
    users: HashMap<String, usize>,
    total: usize,
    /// Per domain: the start of its current minute and the enables in it.
    rate: crate::bounded::Fifo<String, (f64, u32)>,
}

/// The share a bare JID (`user@domain`, with a local part) counts
/// against: its domain's last two labels, about the registrable domain, so
/// that `a.evil.example` and `b.evil.example` share one.
pub fn domain_of(bare: &str) -> Option<&str> {
    bare.split_once('@').map(|(_, d)| share(d))
}

/// A domain's last two labels (`conference.capulet.lit` → `capulet.lit`):
/// the share one party's many subdomains count against together.
pub fn share(domain: &str) -> &str {
    let domain = domain.split('/').next().unwrap_or(domain);
    match domain.rmatch_indices('.').nth(1) {
        Some((i, _)) => &domain[i + 1..],
        None => domain,
    }
}

impl RemoteQuota {
    /// Nothing counted yet, within `limits`.
    pub fn new(limits: Limits) -> Self {
        RemoteQuota {
            limits,
            users: HashMap::new(),
            total: 0,
            rate: crate::bounded::Fifo::new(MAX_RATE_DOMAINS),
        }
    }

    /// Remote users with registrations counted for `domain`.
    pub fn users_of(&self, domain: &str) -> usize {
        self.users.get(domain).copied().unwrap_or(0)
    }

    /// Remote users with registrations counted in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// May `user` (a remote bare JID: `local` says whether its host is one
    /// of ours) enable now? `has_push`: it already has registrations (a
    /// re-enable or another device adds no user). Counts the enable
    /// against the domain's rate when it is let through.
    pub fn admit(
        &mut self,
        user: &str,
        local: bool,
        has_push: bool,
        now: f64,
    ) -> Result<(), StanzaError> {
        if local {
            return Ok(());
        }
        if self.limits.local_only {
            return Err(StanzaError::new(
                "cancel",
                "not-allowed",
                "Push notifications are for users of this server",
            ));
        }
        let Some(domain) = domain_of(user) else {
            return Err(StanzaError::new(
                "cancel",
                "not-allowed",
                "Push notifications are for user accounts",
            ));
        };
        if !has_push
            && (self.users_of(domain) >= self.limits.per_domain
                || self.total >= self.limits.remote_total)
        {
            return Err(StanzaError::new(
                "wait",
                "resource-constraint",
                "Too many push registrations from your server",
            ));
        }
        let key = domain.to_owned();
        let (start, count) = self.rate.get(&key).copied().unwrap_or((now, 0));
        let (start, count) = if now - start >= 60.0 || now < start {
            (now, 0)
        } else {
            (start, count)
        };
        if count >= self.limits.enables_per_minute {
            return Err(StanzaError::new(
                "wait",
                "resource-constraint",
                "Too many push enables from your server, try again later",
            ));
        }
        self.rate.insert(key, (start, count + 1));
        Ok(())
    }

    /// A remote user's registrations went from `had` to `has` (any / none).
    pub fn note(&mut self, user: &str, had: bool, has: bool) {
        let Some(domain) = domain_of(user) else {
            return;
        };
        match (had, has) {
            (false, true) => {
                *self.users.entry(domain.to_owned()).or_default() += 1;
                self.total += 1;
            }
            (true, false) => {
                if let Some(n) = self.users.get_mut(domain) {
                    *n -= 1;
                    if *n == 0 {
                        self.users.remove(domain);
                    }
                    self.total -= 1;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            local_only: false,
            per_domain: 3,
            remote_total: 5,
            enables_per_minute: 4,
        }
    }

    #[test]
    fn users_per_domain_and_in_all() {
        let mut q = RemoteQuota::new(Limits {
            enables_per_minute: 1000,
            ..limits()
        });
        for i in 0..3 {
            let u = format!("u{i}@evil.example");
            assert!(q.admit(&u, false, false, 0.0).is_ok());
            q.note(&u, false, true);
        }
        let e = q.admit("u3@evil.example", false, false, 0.0).unwrap_err();
        assert_eq!((e.type_, e.condition), ("wait", "resource-constraint"));
        // One already registered may add devices or re-enable.
        assert!(q.admit("u0@evil.example", false, true, 0.0).is_ok());
        // Another domain has its own bound, under the total.
        for i in 0..2 {
            let u = format!("u{i}@other.example");
            assert!(q.admit(&u, false, false, 0.0).is_ok());
            q.note(&u, false, true);
        }
        assert_eq!(q.total(), 5);
        assert!(q.admit("x@third.example", false, false, 0.0).is_err());
        // Users of our own hosts are never counted.
        assert!(q.admit("romeo@localhost", true, false, 0.0).is_ok());
        // A disable frees room.
        q.note("u0@evil.example", true, false);
        assert_eq!(q.users_of("evil.example"), 2);
        assert!(q.admit("u3@evil.example", false, false, 0.0).is_ok());
    }

    #[test]
    fn enables_per_domain_per_minute() {
        let mut q = RemoteQuota::new(limits());
        for _ in 0..4 {
            assert!(q.admit("a@evil.example", false, true, 10.0).is_ok());
        }
        assert!(q.admit("a@evil.example", false, true, 30.0).is_err());
        assert!(q.admit("b@fine.example", false, false, 30.0).is_ok());
        assert!(q.admit("a@evil.example", false, true, 70.5).is_ok());
    }

    #[test]
    fn subdomains_share_their_domain_s_bound_and_rate() {
        let mut q = RemoteQuota::new(limits());
        // 100 subdomains, one user each: the bound of one domain.
        let mut admitted = 0;
        for i in 0..100 {
            let u = format!("u@s{i}.evil.example");
            if q.admit(&u, false, false, 0.0).is_ok() {
                q.note(&u, false, true);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3, "per_domain, not per subdomain");
        assert_eq!(q.users_of("evil.example"), 3);
        assert_eq!(share("conference.capulet.lit"), "capulet.lit");
        assert_eq!(share("localhost"), "localhost");
    }

    #[test]
    fn local_only() {
        let mut q = RemoteQuota::new(Limits {
            local_only: true,
            ..limits()
        });
        let e = q.admit("u@evil.example", false, false, 0.0).unwrap_err();
        assert_eq!(e.condition, "not-allowed");
        assert!(q.admit("romeo@localhost", true, false, 0.0).is_ok());
    }
}
