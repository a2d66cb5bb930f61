//! Log lines others can cause, throttled: a `cloud_notify/push` handler
//! that raises is logged at most once a minute per push kind (per host:
//! one [`Throttle`] per service), with the number of failures not logged
//! since. A stranger's subscription requests, say, can't fill the log.
//! Every failure is still counted (the `handler_errors` metric).

use crate::vocabulary::PushKind;

/// Seconds between two log lines of one kind.
pub const LOG_PERIOD: f64 = 60.0;

/// When each push kind's failures were last logged, and how many were
/// not logged since.
#[derive(Debug, Default)]
pub struct Throttle {
    /// By push kind: (last logged at, failures not logged since).
    kinds: Vec<(PushKind, f64, u32)>,
}

impl Throttle {
    /// A failure of a push of `kind` at `now`: `Some(n)` to log it (`n`
    /// failures of that kind went unlogged since the last line), `None`
    /// to count it only.
    pub fn failed(&mut self, kind: PushKind, now: f64) -> Option<u32> {
        let Some(entry) = self.kinds.iter_mut().find(|(k, _, _)| *k == kind) else {
            // (one entry per kind: bounded by the number of kinds)
            self.kinds.push((kind, now, 0));
            return Some(0);
        };
        if now - entry.1 >= LOG_PERIOD || now < entry.1 {
            let missed = std::mem::take(&mut entry.2);
            entry.1 = now;
            return Some(missed);
        }
        entry.2 = entry.2.saturating_add(1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_minute_per_kind_with_the_number_not_logged() {
        let mut t = Throttle::default();
        assert_eq!(t.failed(PushKind::Subscription, 100.0), Some(0));
        for i in 0..10_000 {
            assert_eq!(
                t.failed(PushKind::Subscription, 100.0 + f64::from(i) * 0.005),
                None
            );
        }
        // Another kind has its own minute.
        assert_eq!(t.failed(PushKind::Offline, 101.0), Some(0));
        assert_eq!(t.failed(PushKind::Offline, 102.0), None);
        assert_eq!(t.failed(PushKind::Subscription, 160.0), Some(10_000));
        assert_eq!(t.failed(PushKind::Subscription, 161.0), None);
        assert_eq!(t.kinds.len(), 2);
    }
}
