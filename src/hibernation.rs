//! The extended hibernation of push sessions and their last wake-up
//! (XEP-0198 sessions with push enabled): at each moment of a session's
//! hibernation, what to do to its watchdog and its wake-up timer.
//!
//! The rules:
//! - a hibernated session with push enabled is kept for
//!   `push_max_hibernation_timeout`, never less than smacks' own timeout,
//!   until its first waking push (an important one, or any where
//!   importance is not told apart);
//! - that push puts smacks' own watchdog back, counting from then;
//! - one wake-up per hibernation, `push_wake_before_expiry` seconds before
//!   its end (extended or smacks' own); none once resumed.
//!
//! The state stays where the reference module keeps it (the session's
//! fields, so either module can take a session over): the shim describes
//! it ([`Session`]), [`step`] says what to do ([`Step`]).

/// A moment of a session's hibernation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Smacks hibernated the session.
    Start,
    /// A waking push went to the session's registration.
    WakingPush,
    /// The session resumed (smacks let our watchdog go).
    Resumed,
    /// The session no longer pushes (its registration is gone, or the
    /// module unloads): smacks' own watchdog is put back.
    Released,
}

impl Moment {
    /// The moment of its name (the shim's).
    pub fn of(name: &str) -> Option<Moment> {
        Some(match name {
            "start" => Moment::Start,
            "pushed" => Moment::WakingPush,
            "resumed" => Moment::Resumed,
            "released" => Moment::Released,
            _ => return None,
        })
    }
}

/// What the shim knows of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Session {
    /// It holds a push registration.
    pub pushes: bool,
    /// It is hibernating.
    pub hibernating: bool,
    /// Its watchdog is an extended one (smacks' own is kept aside).
    pub extended: bool,
    /// Its wake-up went during this hibernation.
    pub woken: bool,
    /// A waking push went during this hibernation.
    pub first_push: bool,
    /// Its watchdog's timeout (0 if it has none), if it has a watchdog.
    pub timeout: Option<f64>,
    /// Smacks' own timeout, kept aside while extended.
    pub original: Option<f64>,
}

/// What to do to a session, in this order: `reset`, `stop_wake`,
/// `extend`, `restore`, `forget_original`, `first_push`, `wake_in`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Step {
    /// Forget this hibernation's marks (first push, woken).
    pub reset: bool,
    /// Stop the wake-up timer.
    pub stop_wake: bool,
    /// Keep smacks' own watchdog aside and hibernate this many seconds.
    pub extend: Option<f64>,
    /// Put smacks' own watchdog back, counting from now.
    pub restore: bool,
    /// Forget smacks' own watchdog kept aside (smacks let ours go).
    pub forget_original: bool,
    /// Mark the first waking push of this hibernation.
    pub first_push: bool,
    /// Start the wake-up timer (stopping any other) for this many seconds.
    pub wake_in: Option<f64>,
    /// With `wake_in`: the seconds the hibernation has left when it wakes.
    pub wake_left: f64,
}

/// The options the rules read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `push_max_hibernation_timeout` (seconds; 0: no extension).
    pub max_hibernation: f64,
    /// `push_wake_before_expiry` (seconds; 0: no wake-up).
    pub wake_before: f64,
}

impl Limits {
    /// In how many seconds the wake-up of a hibernation ending in
    /// `timeout` seconds is due, or `None` (the option is 0, or not
    /// shorter than the timeout).
    pub fn wake_delay(self, timeout: f64) -> Option<f64> {
        (self.wake_before > 0.0 && self.wake_before < timeout).then_some(timeout - self.wake_before)
    }

    /// The seconds a hibernation has left when its wake-up (due in
    /// `wake_in`) goes: `push_wake_before_expiry`; 0 without a wake-up.
    pub fn wake_left(self, wake_in: Option<f64>) -> f64 {
        if wake_in.is_some() {
            self.wake_before
        } else {
            0.0
        }
    }

    /// The timeout of a hibernation extended from smacks' own
    /// (`original`), or `None`: nothing to extend.
    pub fn extended(self, original: f64) -> Option<f64> {
        (self.max_hibernation > original).then_some(self.max_hibernation)
    }
}

/// What to do to `session` at `moment`.
pub fn step(moment: Moment, session: Session, limits: Limits) -> Step {
    match moment {
        Moment::Start => start(session, limits),
        Moment::WakingPush => pushed(session, limits),
        Moment::Resumed => Step {
            reset: true,
            stop_wake: true,
            forget_original: true,
            ..Step::default()
        },
        Moment::Released => Step {
            stop_wake: true,
            restore: session.extended && session.hibernating && session.timeout.is_some(),
            forget_original: session.extended,
            ..Step::default()
        },
    }
}

/// Smacks hibernated the session: extended (and its wake-up set for the
/// extension's end) when it pushes, else its wake-up set for smacks' own
/// end. A session already extended (by the reference module, say) keeps
/// its watchdog.
fn start(session: Session, limits: Limits) -> Step {
    let mut out = Step {
        reset: true,
        ..Step::default()
    };
    if !session.pushes || session.extended {
        return out;
    }
    out.stop_wake = true;
    let Some(timeout) = session.timeout else {
        return out;
    };
    out.extend = limits.extended(timeout);
    out.wake_in = limits.wake_delay(out.extend.unwrap_or(timeout));
    out.wake_left = limits.wake_left(out.wake_in);
    out
}

/// A waking push went to the session's registration: the first of this
/// hibernation ends its extension (smacks' own watchdog back, its
/// wake-up set for that one's end unless it was woken already).
fn pushed(session: Session, limits: Limits) -> Step {
    if !session.hibernating || session.first_push {
        return Step::default();
    }
    let mut out = Step {
        first_push: true,
        ..Step::default()
    };
    if !session.extended {
        return out;
    }
    out.forget_original = true;
    if session.timeout.is_some() {
        out.restore = true;
        out.stop_wake = true;
        if !session.woken {
            out.wake_in = session.original.and_then(|t| limits.wake_delay(t));
            out.wake_left = limits.wake_left(out.wake_in);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_hibernation: 259_200.0,
        wake_before: 60.0,
    };

    fn hibernated(timeout: f64) -> Session {
        Session {
            pushes: true,
            hibernating: true,
            timeout: Some(timeout),
            ..Session::default()
        }
    }

    #[test]
    fn a_push_session_is_extended_and_woken_before_the_extension_ends() {
        let s = step(Moment::Start, hibernated(600.0), LIMITS);
        assert_eq!(s.extend, Some(259_200.0));
        assert_eq!(s.wake_in, Some(259_140.0));
        assert_eq!(
            s.wake_left, 60.0,
            "logged: the time the hibernation has left"
        );
        assert!(s.reset && s.stop_wake && !s.restore);
    }

    #[test]
    fn never_shorter_than_smacks_own_and_then_woken_before_its_end() {
        let s = step(
            Moment::Start,
            hibernated(600.0),
            Limits {
                max_hibernation: 300.0,
                ..LIMITS
            },
        );
        assert_eq!(s.extend, None);
        assert_eq!(s.wake_in, Some(540.0));
    }

    #[test]
    fn a_session_without_push_or_already_extended_keeps_its_watchdog() {
        let without = Session {
            pushes: false,
            ..hibernated(600.0)
        };
        assert_eq!(
            step(Moment::Start, without, LIMITS),
            Step {
                reset: true,
                ..Step::default()
            }
        );
        let taken_over = Session {
            extended: true,
            original: Some(600.0),
            ..hibernated(259_200.0)
        };
        let s = step(Moment::Start, taken_over, LIMITS);
        assert_eq!((s.extend, s.wake_in), (None, None));
        // No watchdog: nothing to extend, and no wake-up left running.
        let no_dog = Session {
            timeout: None,
            ..hibernated(600.0)
        };
        let s = step(Moment::Start, no_dog, LIMITS);
        assert!(s.stop_wake && s.extend.is_none() && s.wake_in.is_none());
    }

    #[test]
    fn no_wake_up_where_the_option_is_off_or_too_long() {
        let off = Limits {
            wake_before: 0.0,
            ..LIMITS
        };
        assert_eq!(step(Moment::Start, hibernated(600.0), off).wake_in, None);
        let long = Limits {
            max_hibernation: 0.0,
            wake_before: 600.0,
        };
        assert_eq!(step(Moment::Start, hibernated(600.0), long).wake_in, None);
    }

    #[test]
    fn the_first_waking_push_puts_smacks_own_watchdog_back_and_wakes_before_its_end() {
        let extended = Session {
            extended: true,
            original: Some(600.0),
            ..hibernated(259_200.0)
        };
        let s = step(Moment::WakingPush, extended, LIMITS);
        assert!(s.first_push && s.restore && s.forget_original && s.stop_wake);
        assert_eq!(s.wake_in, Some(540.0));
        // Woken already: one wake-up per hibernation.
        let woken = Session {
            woken: true,
            ..extended
        };
        assert_eq!(step(Moment::WakingPush, woken, LIMITS).wake_in, None);
        // Only the first.
        let again = Session {
            first_push: true,
            ..extended
        };
        assert_eq!(step(Moment::WakingPush, again, LIMITS), Step::default());
        // Not hibernating: nothing.
        let live = Session {
            hibernating: false,
            ..extended
        };
        assert_eq!(step(Moment::WakingPush, live, LIMITS), Step::default());
        // Not extended: only marked.
        let plain = step(Moment::WakingPush, hibernated(600.0), LIMITS);
        assert_eq!(
            plain,
            Step {
                first_push: true,
                ..Step::default()
            }
        );
    }

    #[test]
    fn resumed_or_released_no_wake_up_is_left() {
        let extended = Session {
            extended: true,
            original: Some(600.0),
            ..hibernated(259_200.0)
        };
        let s = step(Moment::Resumed, extended, LIMITS);
        assert!(s.reset && s.stop_wake && s.forget_original && !s.restore);
        let s = step(Moment::Released, extended, LIMITS);
        assert!(s.stop_wake && s.restore && s.forget_original && s.wake_in.is_none());
        let s = step(Moment::Released, hibernated(600.0), LIMITS);
        assert!(s.stop_wake && !s.restore && !s.forget_original);
        assert_eq!(Moment::of("pushed"), Some(Moment::WakingPush));
        assert_eq!(Moment::of("other"), None);
    }
}
