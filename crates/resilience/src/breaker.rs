//! The circuit breaker: fails fast while a service is down ([`CircuitBreaker`] under a
//! [`BreakerConfig`]), with the permits a call holds ([`Permit`], [`OwnedPermit`]) and what
//! a refusal or a change of state says ([`Rejected`], [`StateChange`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Which recent calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last N calls.
    Count(u32),
    /// The calls of the last whole seconds of this duration.
    Time(Duration),
}

/// When a [`CircuitBreaker`] opens, how long it stays open, and how it probes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The calls the rates are computed over.
    pub window: SlidingWindow,
    /// Opens when at least this share of the window's calls failed (0.5 = 50%).
    pub failure_rate: f64,
    /// Opens when at least this share of the window's calls were slow.
    pub slow_call_rate: f64,
    /// A call taking at least this long is slow (whether it succeeded or not).
    pub slow_call_duration: Duration,
    /// No rate is judged before the window holds this many calls.
    pub minimum_calls: u32,
    /// How long the first trip keeps the breaker open; each consecutive trip doubles it.
    pub open_duration: Duration,
    /// The longest the breaker stays open.
    pub max_open_duration: Duration,
    /// Calls admitted while half-open; their rates decide between closing and opening again.
    pub half_open_probes: u32,
    /// A probe that has not reported after this long counts as failed, so a hung probe
    /// cannot wedge the breaker half-open.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    /// Resilience4j's defaults where they fit an LLM API: the last 20 calls, 50% failures,
    /// all of them slow (over 60 s), at least 10 calls; open 5 s doubling to 2 min; 3 probes
    /// with 60 s each.
    fn default() -> Self {
        BreakerConfig {
            window: SlidingWindow::Count(20),
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: Duration::from_secs(60),
            minimum_calls: 10,
            open_duration: Duration::from_secs(5),
            max_open_duration: Duration::from_secs(120),
            half_open_probes: 3,
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls fail fast until the given instant.
    Open {
        /// When the breaker lets probes through.
        until: Instant,
    },
    /// A bounded number of probe calls pass to test the service.
    HalfOpen,
}

/// A transition of a [`CircuitBreaker`], as given to its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
}

/// How a call admitted by a [`Permit`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The service worked.
    Success,
    /// The service failed (counted against it).
    Failure,
    /// Says nothing about the service's health (a bad request, a rate-limited key, a cancel).
    Ignored,
}

/// The call was not admitted: the breaker is open (or half-open with every probe taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When a call may be admitted again, at the earliest.
    pub until: Instant,
}

/// Figures of a [`CircuitBreaker`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state.
    pub state: BreakerState,
    /// Calls in the sliding window.
    pub calls: u32,
    /// Failed share of the window's calls.
    pub failure_rate: f64,
    /// Slow share of the window's calls.
    pub slow_call_rate: f64,
    /// Consecutive trips (reset when it closes).
    pub trips: u32,
}

type Listener = Box<dyn Fn(StateChange) + Send + Sync>;

/// A circuit breaker: closed, open, half-open, over a count- or time-based sliding window,
/// with failure-rate and slow-call thresholds, a minimum number of calls, an open time that
/// grows on consecutive trips, bounded half-open probes with deadlines, and state-change events.
///
/// On the success path in the closed state, [`try_acquire`](CircuitBreaker::try_acquire) is one
/// atomic load and recording takes one uncontended lock. Correct under concurrency: outcomes of
/// calls admitted before a transition are ignored after it.
pub struct CircuitBreaker {
    config: BreakerConfig,
    /// `generation << 2 | state code`, for the lock-free closed-state check.
    fast: AtomicU64,
    inner: Mutex<Inner>,
    listener: Option<Listener>,
    /// The shared state this breaker's openings are published to, and its endpoint's name.
    link: std::sync::OnceLock<(Arc<dyn crate::shared::SharedState>, String)>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    generation: u64,
    window: Window,
    trips: u32,
    /// Half-open: probes admitted and not yet reported, with their deadlines.
    probes: Vec<(u64, Instant)>,
    next_probe: u64,
    probe_results: Counts,
}

/// What a permit knows of its admission; both kinds of permit report through it.
#[derive(Debug, Clone, Copy)]
struct Admission {
    generation: u64,
    probe: Option<u64>,
    started: Instant,
}

impl Admission {
    /// Reports the call's outcome; its duration is measured from admission.
    fn record(self, breaker: &CircuitBreaker, outcome: CallOutcome) {
        // The one clock read of the success path besides admission's.
        let now = Instant::now();
        let slow = now - self.started >= breaker.config.slow_call_duration;
        breaker.record(self.generation, self.probe, outcome, slow, now);
    }

    /// A permit dropped unreported: ignored outcomes use no time, so the clock is skipped.
    fn ignore(self, breaker: &CircuitBreaker) {
        breaker.record(
            self.generation,
            self.probe,
            CallOutcome::Ignored,
            false,
            self.started,
        );
    }
}

/// Admission of one call; report how it went with [`record`](Permit::record). Dropping it
/// unreported counts as [`CallOutcome::Ignored`].
#[derive(Debug)]
#[must_use = "report the call's outcome with `record`"]
pub struct Permit<'breaker> {
    breaker: &'breaker CircuitBreaker,
    admission: Admission,
    recorded: bool,
}

impl Permit<'_> {
    /// Reports the call's outcome; its duration is measured from admission.
    pub fn record(mut self, outcome: CallOutcome) {
        self.recorded = true;
        self.admission.record(self.breaker, outcome);
    }

    /// The same admission, owning a handle on the breaker: for a call whose outcome is known
    /// only later, elsewhere (a stream that can still fail after it started answering).
    pub fn into_owned(mut self, breaker: &Arc<CircuitBreaker>) -> OwnedPermit {
        debug_assert!(std::ptr::eq(self.breaker, Arc::as_ptr(breaker)));
        self.recorded = true; // The owned permit reports instead.
        OwnedPermit {
            breaker: breaker.clone(),
            admission: self.admission,
            recorded: false,
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.admission.ignore(self.breaker);
        }
    }
}

/// A [`Permit`] that owns a handle on its breaker, so it can travel with the call (see
/// [`Permit::into_owned`]). Dropping it unreported counts as [`CallOutcome::Ignored`].
#[derive(Debug)]
#[must_use = "report the call's outcome with `record`"]
pub struct OwnedPermit {
    breaker: Arc<CircuitBreaker>,
    admission: Admission,
    recorded: bool,
}

impl OwnedPermit {
    /// Reports the call's outcome; its duration is measured from admission.
    pub fn record(mut self, outcome: CallOutcome) {
        self.recorded = true;
        self.admission.record(&self.breaker, outcome);
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if !self.recorded {
            self.admission.ignore(&self.breaker);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker with `config`.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            fast: AtomicU64::new(CLOSED),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                window: Window::new(config.window),
                trips: 0,
                probes: Vec::new(),
                next_probe: 0,
                probe_results: Counts::default(),
            }),
            listener: None,
            link: std::sync::OnceLock::new(),
        }
    }

    /// Shares this breaker's openings with other processes through `state`, as the breaker
    /// of `endpoint`: when it opens here, theirs for the same endpoint open until the same
    /// time, and the other way round. Once per breaker; later calls are ignored.
    pub fn share(
        self: &Arc<Self>,
        state: Arc<dyn crate::shared::SharedState>,
        endpoint: impl Into<String>,
    ) {
        let endpoint = endpoint.into();
        if self.link.set((state.clone(), endpoint.clone())).is_err() {
            return;
        }
        let breaker = Arc::downgrade(self);
        state.subscribe(Box::new(move |change| {
            if let (
                Some(breaker),
                crate::shared::SharedChange::BreakerOpen {
                    endpoint: opened,
                    until,
                },
            ) = (breaker.upgrade(), change)
                && *opened == endpoint
                && let Some(until) =
                    crate::shared::from_wall(*until, breaker.config.max_open_duration)
            {
                breaker.open_from_elsewhere(until);
            }
        }));
    }

    /// Opens until `until` because another process's breaker for this endpoint did; an
    /// opening that reaches further here stays. Not published again.
    fn open_from_elsewhere(&self, until: Instant) {
        let mut inner = self.lock();
        let reaches_further = match inner.state {
            BreakerState::Open { until: running } => until > running,
            BreakerState::Closed | BreakerState::HalfOpen => true,
        };
        if !reaches_further || until <= Instant::now() {
            return;
        }
        let change = self.transition(&mut inner, BreakerState::Open { until });
        drop(inner);
        self.announce(change);
    }

    /// Calls `listener` on every state change (outside the breaker's lock; it is also logged
    /// through `tracing`).
    pub fn with_listener(mut self, listener: impl Fn(StateChange) + Send + Sync + 'static) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Admits a call, or rejects it while the breaker is open.
    ///
    /// # Errors
    /// [`Rejected`] with the instant a call may pass again.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let fast = self.fast.load(Ordering::Acquire);
        if fast & 3 == CLOSED {
            return Ok(self.permit(fast >> 2, None));
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let mut changes = Vec::new();
        if let BreakerState::Open { until } = inner.state {
            if now < until {
                return Err(Rejected { until });
            }
            changes.push(self.transition(&mut inner, BreakerState::HalfOpen));
        }
        let result = match inner.state {
            BreakerState::Closed => Ok(self.permit(inner.generation, None)),
            BreakerState::HalfOpen => self.admit_probe(&mut inner, now, &mut changes),
            BreakerState::Open { until } => Err(Rejected { until }),
        };
        drop(inner);
        self.notify(changes);
        result
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// The current figures.
    pub fn stats(&self) -> BreakerStats {
        let inner = self.lock();
        let counts = inner.window.totals(Instant::now());
        BreakerStats {
            state: inner.state,
            calls: counts.calls,
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_rate(),
            trips: inner.trips,
        }
    }

    fn permit(&self, generation: u64, probe: Option<u64>) -> Permit<'_> {
        Permit {
            breaker: self,
            admission: Admission {
                generation,
                probe,
                started: Instant::now(),
            },
            recorded: false,
        }
    }

    fn admit_probe(
        &self,
        inner: &mut Inner,
        now: Instant,
        changes: &mut Vec<StateChange>,
    ) -> Result<Permit<'_>, Rejected> {
        // A probe past its deadline is a failed (and slow) probe, and frees its slot.
        let expired = inner
            .probes
            .iter()
            .filter(|(_, deadline)| *deadline <= now)
            .count();
        if expired > 0 {
            inner.probes.retain(|(_, deadline)| *deadline > now);
            for _ in 0..expired {
                inner.probe_results.add(true, true);
            }
            if let Some(change) = self.judge_probes(inner, now) {
                changes.push(change);
                return match inner.state {
                    BreakerState::Open { until } => Err(Rejected { until }),
                    _ => Ok(self.permit(inner.generation, None)),
                };
            }
        }
        let taken = inner.probes.len() as u32 + inner.probe_results.calls;
        if taken >= self.config.half_open_probes {
            let until = inner
                .probes
                .iter()
                .map(|(_, deadline)| *deadline)
                .min()
                .unwrap_or(now);
            return Err(Rejected { until });
        }
        let id = inner.next_probe;
        inner.next_probe += 1;
        inner
            .probes
            .push((id, crate::backoff::later(now, self.config.probe_timeout)));
        Ok(self.permit(inner.generation, Some(id)))
    }

    fn record(
        &self,
        generation: u64,
        probe: Option<u64>,
        outcome: CallOutcome,
        slow: bool,
        now: Instant,
    ) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return; // Admitted before a transition: says nothing about the new state.
        }
        let failure = outcome == CallOutcome::Failure;
        let change = match inner.state {
            BreakerState::Closed => {
                if outcome == CallOutcome::Ignored {
                    return;
                }
                inner.window.add(now, failure, slow);
                let counts = inner.window.totals(now);
                (counts.calls >= self.config.minimum_calls && self.over_threshold(counts))
                    .then(|| self.trip(&mut inner, now))
            }
            BreakerState::HalfOpen => {
                let Some(id) = probe else { return };
                let before = inner.probes.len();
                inner.probes.retain(|(probe_id, _)| *probe_id != id);
                if inner.probes.len() == before || outcome == CallOutcome::Ignored {
                    return; // Expired already, or frees its slot for another probe.
                }
                inner.probe_results.add(failure, slow);
                self.judge_probes(&mut inner, now)
            }
            BreakerState::Open { .. } => None,
        };
        drop(inner);
        self.notify(change.into_iter().collect());
    }

    /// Once every probe has reported, closes or opens again. `None` while undecided.
    fn judge_probes(&self, inner: &mut Inner, now: Instant) -> Option<StateChange> {
        if inner.probe_results.calls < self.config.half_open_probes {
            return None;
        }
        let counts = inner.probe_results;
        Some(if self.over_threshold(counts) {
            self.trip(inner, now)
        } else {
            inner.trips = 0;
            self.transition(inner, BreakerState::Closed)
        })
    }

    fn over_threshold(&self, counts: Counts) -> bool {
        counts.failure_rate() >= self.config.failure_rate
            || counts.slow_rate() >= self.config.slow_call_rate
    }

    fn trip(&self, inner: &mut Inner, now: Instant) -> StateChange {
        inner.trips = inner.trips.saturating_add(1);
        let doublings = (inner.trips - 1).min(20);
        let open_for = self
            .config
            .open_duration
            .saturating_mul(1 << doublings)
            .min(self.config.max_open_duration);
        self.transition(
            inner,
            BreakerState::Open {
                until: crate::backoff::later(now, open_for),
            },
        )
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) -> StateChange {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.probes.clear();
        inner.probe_results = Counts::default();
        if to == BreakerState::Closed {
            inner.window = Window::new(self.config.window);
        }
        let code = match to {
            BreakerState::Closed => CLOSED,
            BreakerState::Open { .. } => OPEN,
            BreakerState::HalfOpen => HALF_OPEN,
        };
        self.fast
            .store(inner.generation << 2 | code, Ordering::Release);
        StateChange { from, to }
    }

    /// Announces state changes made here, and publishes openings to other processes.
    fn notify(&self, changes: Vec<StateChange>) {
        for change in changes {
            if let (BreakerState::Open { until }, Some((state, endpoint))) =
                (change.to, self.link.get())
            {
                state.publish(crate::shared::SharedChange::BreakerOpen {
                    endpoint: endpoint.clone(),
                    until: crate::shared::to_wall(until),
                });
            }
            self.announce(change);
        }
    }

    fn announce(&self, change: StateChange) {
        tracing::info!(from = ?change.from, to = ?change.to, "circuit breaker state change");
        if let Some(listener) = &self.listener {
            listener(change);
        }
    }

    /// The breaker's state; parking_lot's lock does not poison, so a panic elsewhere cannot
    /// leave it unusable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Counts {
    fn add(&mut self, failure: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failure);
        self.slow += u32::from(slow);
    }

    fn failure_rate(self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.failures) / f64::from(self.calls)
        }
    }

    fn slow_rate(self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.slow) / f64::from(self.calls)
        }
    }
}

#[derive(Debug)]
enum Window {
    /// A ring of the last calls' (failure, slow) bits, with running totals.
    Count {
        ring: Vec<u8>,
        next: usize,
        totals: Counts,
    },
    /// One bucket per second.
    Time {
        start: Instant,
        buckets: Vec<(u64, Counts)>,
    },
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;
const FILLED: u8 = 4;

impl Window {
    fn new(kind: SlidingWindow) -> Self {
        match kind {
            SlidingWindow::Count(size) => Window::Count {
                ring: vec![0; size.max(1) as usize],
                next: 0,
                totals: Counts::default(),
            },
            SlidingWindow::Time(span) => Window::Time {
                start: Instant::now(),
                buckets: vec![(0, Counts::default()); span.as_secs().max(1) as usize],
            },
        }
    }

    fn add(&mut self, now: Instant, failure: bool, slow: bool) {
        match self {
            Window::Count { ring, next, totals } => {
                let old = ring[*next];
                if old & FILLED != 0 {
                    totals.calls -= 1;
                    totals.failures -= u32::from(old & FAILED != 0);
                    totals.slow -= u32::from(old & SLOW != 0);
                }
                ring[*next] =
                    FILLED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
                totals.add(failure, slow);
                *next = (*next + 1) % ring.len();
            }
            Window::Time { start, buckets } => {
                let second = now.duration_since(*start).as_secs();
                let index = (second % buckets.len() as u64) as usize;
                if buckets[index].0 != second {
                    buckets[index] = (second, Counts::default());
                }
                buckets[index].1.add(failure, slow);
            }
        }
    }

    fn totals(&self, now: Instant) -> Counts {
        match self {
            Window::Count { totals, .. } => *totals,
            Window::Time { start, buckets } => {
                let second = now.duration_since(*start).as_secs();
                let span = buckets.len() as u64;
                let mut totals = Counts::default();
                for (bucket_second, counts) in buckets {
                    if second.saturating_sub(*bucket_second) < span && *bucket_second <= second {
                        totals.calls += counts.calls;
                        totals.failures += counts.failures;
                        totals.slow += counts.slow;
                    }
                }
                totals
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: SlidingWindow::Count(4),
            minimum_calls: 4,
            open_duration: Duration::from_secs(1),
            max_open_duration: Duration::from_secs(3),
            half_open_probes: 2,
            probe_timeout: Duration::from_secs(10),
            ..BreakerConfig::default()
        }
    }

    fn call(breaker: &CircuitBreaker, outcome: CallOutcome) -> Result<(), Rejected> {
        breaker.try_acquire().map(|permit| permit.record(outcome))
    }

    #[tokio::test(start_paused = true)]
    async fn trips_at_the_failure_rate_after_the_minimum_calls_and_escalates() {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let breaker = CircuitBreaker::new(config())
            .with_listener(move |change| seen.lock().unwrap().push(change.to));
        call(&breaker, CallOutcome::Failure).unwrap();
        call(&breaker, CallOutcome::Failure).unwrap();
        call(&breaker, CallOutcome::Ignored).unwrap();
        call(&breaker, CallOutcome::Success).unwrap();
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "three calls are under the minimum"
        );
        call(&breaker, CallOutcome::Success).unwrap();
        let opened = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            breaker.state(),
            BreakerState::Open { until: opened },
            "2 of 4 failed"
        );
        assert_eq!(
            call(&breaker, CallOutcome::Success),
            Err(Rejected { until: opened })
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        call(&breaker, CallOutcome::Failure).unwrap();
        call(&breaker, CallOutcome::Success).unwrap();
        let reopened = Instant::now() + Duration::from_secs(2);
        assert_eq!(
            breaker.state(),
            BreakerState::Open { until: reopened },
            "a failed probe doubles the open time"
        );

        tokio::time::advance(Duration::from_secs(2)).await;
        call(&breaker, CallOutcome::Success).unwrap();
        call(&breaker, CallOutcome::Success).unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.stats().trips, 0);
        let kinds: Vec<&str> = changes
            .lock()
            .unwrap()
            .iter()
            .map(|state| match state {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen => "half-open",
            })
            .collect();
        assert_eq!(kinds, ["open", "half-open", "open", "half-open", "closed"]);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_a_bounded_number_of_probes_and_a_hung_one_expires() {
        let breaker = CircuitBreaker::new(config());
        for _ in 0..4 {
            call(&breaker, CallOutcome::Failure).unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let first = breaker.try_acquire().unwrap();
        let _hung = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err(), "two probes at most");
        first.record(CallOutcome::Success);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The hung probe's deadline passed: it counts as failed, so 1 of 2 probes failed.
        assert!(breaker.try_acquire().is_err());
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_trip_it_too() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            slow_call_rate: 0.5,
            slow_call_duration: Duration::from_secs(5),
            ..config()
        });
        for _ in 0..2 {
            let permit = breaker.try_acquire().unwrap();
            tokio::time::advance(Duration::from_secs(6)).await;
            permit.record(CallOutcome::Success);
        }
        call(&breaker, CallOutcome::Success).unwrap();
        call(&breaker, CallOutcome::Success).unwrap();
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_forgets_old_calls() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            window: SlidingWindow::Time(Duration::from_secs(2)),
            ..config()
        });
        call(&breaker, CallOutcome::Failure).unwrap();
        call(&breaker, CallOutcome::Failure).unwrap();
        call(&breaker, CallOutcome::Failure).unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        call(&breaker, CallOutcome::Failure).unwrap();
        assert_eq!(breaker.stats().calls, 1);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "the first three left the window"
        );
        for _ in 0..3 {
            call(&breaker, CallOutcome::Failure).unwrap();
        }
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_from_before_a_transition_are_ignored() {
        let breaker = CircuitBreaker::new(config());
        let early = breaker.try_acquire().unwrap();
        for _ in 0..4 {
            call(&breaker, CallOutcome::Failure).unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = breaker.try_acquire().unwrap();
        early.record(CallOutcome::Success);
        probe.record(CallOutcome::Success);
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "only one of two probes reported"
        );
    }
}
