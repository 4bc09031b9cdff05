use chrono::{DateTime, SubsecRound, Utc};
use std::sync::{Arc, Mutex};

/// Source of "now". Domain rules take `now` as an argument; handlers ask the clock,
/// so tests can pin time at window boundaries.
#[derive(Clone)]
pub struct Clock(ClockKind);

#[derive(Clone)]
enum ClockKind {
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn system() -> Self {
        Self(ClockKind::System)
    }

    /// A clock that stays at `at` until [`Clock::set`] moves it.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self(ClockKind::Manual(Arc::new(Mutex::new(at))))
    }

    /// The system clock is cut to whole microseconds, the precision every stored
    /// timestamp keeps, so a response written from `now` says exactly what a later
    /// read (or an Idempotency-Key replay) of the stored item says.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            ClockKind::System => Utc::now().trunc_subsecs(6),
            ClockKind::Manual(at) => *at.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock; a system clock ignores it.
    pub fn set(&self, to: DateTime<Utc>) {
        if let ClockKind::Manual(at) = &self.0 {
            *at.lock().unwrap_or_else(|e| e.into_inner()) = to;
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
