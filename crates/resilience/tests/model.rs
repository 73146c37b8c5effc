//! State-machine tests: the breaker and the key pool against small, plain models, under
//! paused tokio time, for random sequences of operations.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use resilience::breaker::*;
use resilience::keys::*;
use resilience::*;
use tokio::time::Instant;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- breaker

#[derive(Debug, Clone)]
enum BreakerOp {
    /// Try to admit a call and hold it.
    Acquire,
    /// Report the held call `index % held` with an outcome (0 success, 1 failure, 2 ignored).
    Report(usize, u8),
    /// Let time pass (milliseconds).
    Wait(u64),
}

fn breaker_op() -> impl Strategy<Value = BreakerOp> {
    prop_oneof![
        4 => Just(BreakerOp::Acquire),
        4 => (any::<usize>(), 0..3_u8).prop_map(|(index, outcome)| BreakerOp::Report(index, outcome)),
        2 => prop_oneof![0..50_u64, 900..1_200_u64, 1_900..4_500_u64].prop_map(BreakerOp::Wait),
    ]
}

/// The breaker's rules, written as plainly as possible.
#[derive(Debug)]
struct BreakerModel {
    config: BreakerConfig,
    state: BreakerState,
    generation: u64,
    /// The closed state's last calls: (failed, slow).
    calls: Vec<(bool, bool)>,
    trips: u32,
    /// Half-open probes outstanding: (generation-unique id, deadline).
    probes: Vec<(u64, Instant)>,
    next_probe: u64,
    probe_results: Vec<(bool, bool)>,
}

#[derive(Debug, Clone, Copy)]
struct ModelPermit {
    generation: u64,
    probe: Option<u64>,
    started: Instant,
}

impl BreakerModel {
    fn new(config: BreakerConfig) -> Self {
        BreakerModel {
            config,
            state: BreakerState::Closed,
            generation: 0,
            calls: Vec::new(),
            trips: 0,
            probes: Vec::new(),
            next_probe: 0,
            probe_results: Vec::new(),
        }
    }

    fn rates(results: &[(bool, bool)]) -> (f64, f64) {
        let calls = results.len() as f64;
        let failures = results.iter().filter(|(failed, _)| *failed).count() as f64;
        let slow = results.iter().filter(|(_, slow)| *slow).count() as f64;
        (failures / calls, slow / calls)
    }

    fn over(&self, results: &[(bool, bool)]) -> bool {
        let (failure_rate, slow_rate) = Self::rates(results);
        failure_rate >= self.config.failure_rate || slow_rate >= self.config.slow_call_rate
    }

    fn go(&mut self, to: BreakerState) {
        self.state = to;
        self.generation += 1;
        self.probes.clear();
        self.probe_results.clear();
        if to == BreakerState::Closed {
            self.calls.clear();
        }
    }

    fn trip(&mut self, now: Instant) {
        self.trips += 1;
        let open_for = (self.config.open_duration * 2_u32.pow(self.trips - 1))
            .min(self.config.max_open_duration);
        self.go(BreakerState::Open {
            until: now + open_for,
        });
    }

    fn judge(&mut self, now: Instant) -> bool {
        if (self.probe_results.len() as u32) < self.config.half_open_probes {
            return false;
        }
        if self.over(&self.probe_results.clone()) {
            self.trip(now);
        } else {
            self.trips = 0;
            self.go(BreakerState::Closed);
        }
        true
    }

    fn acquire(&mut self, now: Instant) -> Option<ModelPermit> {
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return None;
            }
            self.go(BreakerState::HalfOpen);
        }
        match self.state {
            BreakerState::Closed => Some(ModelPermit {
                generation: self.generation,
                probe: None,
                started: now,
            }),
            BreakerState::HalfOpen => {
                let before = self.probes.len();
                self.probes.retain(|(_, deadline)| *deadline > now);
                for _ in self.probes.len()..before {
                    self.probe_results.push((true, true));
                }
                if before > self.probes.len() && self.judge(now) {
                    return match self.state {
                        BreakerState::Open { .. } => None,
                        _ => Some(ModelPermit {
                            generation: self.generation,
                            probe: None,
                            started: now,
                        }),
                    };
                }
                if self.probes.len() + self.probe_results.len()
                    >= self.config.half_open_probes as usize
                {
                    return None;
                }
                let id = self.next_probe;
                self.next_probe += 1;
                self.probes.push((id, now + self.config.probe_timeout));
                Some(ModelPermit {
                    generation: self.generation,
                    probe: Some(id),
                    started: now,
                })
            }
            _ => None,
        }
    }

    fn report(&mut self, permit: ModelPermit, outcome: CallOutcome, now: Instant) {
        if permit.generation != self.generation {
            return;
        }
        let failed = outcome == CallOutcome::Failure;
        let slow = now - permit.started >= self.config.slow_call_duration;
        match self.state {
            BreakerState::Closed if outcome != CallOutcome::Ignored => {
                self.calls.push((failed, slow));
                let SlidingWindow::Count(size) = self.config.window else {
                    unreachable!()
                };
                if self.calls.len() > size as usize {
                    self.calls.remove(0);
                }
                if self.calls.len() as u32 >= self.config.minimum_calls
                    && self.over(&self.calls.clone())
                {
                    self.trip(now);
                }
            }
            BreakerState::HalfOpen => {
                let Some(id) = permit.probe else { return };
                let Some(position) = self.probes.iter().position(|(probe, _)| *probe == id) else {
                    return;
                };
                self.probes.remove(position);
                if outcome != CallOutcome::Ignored {
                    self.probe_results.push((failed, slow));
                    self.judge(now);
                }
            }
            _ => {}
        }
    }
}

fn outcome(code: u8) -> CallOutcome {
    match code {
        0 => CallOutcome::Success,
        1 => CallOutcome::Failure,
        _ => CallOutcome::Ignored,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn breaker_follows_the_model(ops in prop::collection::vec(breaker_op(), 1..120)) {
        let runtime = paused_runtime();
        runtime.block_on(async {
            let config = { let mut config = BreakerConfig::default(); config.window = SlidingWindow::Count(5); config.failure_rate = 0.5; config.slow_call_rate = 0.8; config.slow_call_duration = Duration::from_secs(2); config.minimum_calls = 3; config.open_duration = Duration::from_secs(1); config.max_open_duration = Duration::from_secs(4); config.half_open_probes = 2; config.probe_timeout = Duration::from_secs(3); config };
            let breaker = CircuitBreaker::new(config);
            let mut model = BreakerModel::new(config);
            let mut held: Vec<(Permit<'_>, ModelPermit)> = Vec::new();
            for op in ops {
                let now = Instant::now();
                match op {
                    BreakerOp::Acquire => {
                        let real = breaker.try_acquire();
                        let expected = model.acquire(now);
                        prop_assert_eq!(real.is_ok(), expected.is_some(), "admission at {:?}", model.state);
                        if let (Ok(permit), Some(model_permit)) = (real, expected) {
                            held.push((permit, model_permit));
                        }
                    }
                    BreakerOp::Report(index, code) if !held.is_empty() => {
                        let (permit, model_permit) = held.remove(index % held.len());
                        permit.record(outcome(code));
                        model.report(model_permit, outcome(code), now);
                    }
                    BreakerOp::Report(..) => {}
                    BreakerOp::Wait(millis) => tokio::time::advance(Duration::from_millis(millis)).await,
                }
                prop_assert_eq!(breaker.state(), model.state);
                prop_assert_eq!(breaker.stats().trips, model.trips);
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------- key pool

#[derive(Debug, Clone)]
enum KeyOp {
    Acquire,
    /// Report on held lease `index % held`: 0 success, 1 429 (hint in seconds or none),
    /// 2 rejected, 3 quota, 4 transient.
    Report(usize, u8, Option<u64>),
    Release(usize),
    Wait(u64),
}

fn key_op() -> impl Strategy<Value = KeyOp> {
    prop_oneof![
        4 => Just(KeyOp::Acquire),
        3 => (any::<usize>(), 0..5_u8, prop::option::of(0..5_u64)).prop_map(|(index, code, hint)| KeyOp::Report(index, code, hint)),
        2 => any::<usize>().prop_map(KeyOp::Release),
        2 => (0..3_000_u64).prop_map(KeyOp::Wait),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelKey {
    last_used: u64,
    in_flight: u32,
    cooling_until: Option<Instant>,
    streak: u32,
    disabled: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn key_pool_follows_the_model(ops in prop::collection::vec(key_op(), 1..150)) {
        let runtime = paused_runtime();
        runtime.block_on(async {
            let config = { let mut config = KeyPoolConfig::default(); config.rate_limit_cooldown = Duration::from_secs(1); config.max_rate_limit_cooldown = Duration::from_secs(4); config.quota_cooldown = Duration::from_secs(10); config };
            let pool = KeyPool::new((0..3).map(|index| ApiKey::new(format!("key-{index}"))).collect(), config);
            let mut model = vec![ModelKey::default(); 3];
            let mut picks = 0;
            let mut held: Vec<KeyLease> = Vec::new();
            for op in ops {
                let now = Instant::now();
                match op {
                    KeyOp::Acquire => {
                        let expected = model
                            .iter()
                            .enumerate()
                            .filter(|(_, key)| !key.disabled && key.cooling_until.is_none_or(|until| until <= now))
                            .min_by_key(|(index, key)| (key.last_used, key.in_flight, *index))
                            .map(|(index, _)| index);
                        match (pool.try_acquire(), expected) {
                            (Ok(lease), Some(index)) => {
                                prop_assert_eq!(lease.index(), index);
                                prop_assert_eq!(lease.key().expose(), format!("key-{index}"));
                                picks += 1;
                                let key = &mut model[index];
                                key.last_used = picks;
                                key.in_flight += 1;
                                key.cooling_until = None;
                                held.push(lease);
                            }
                            (Err(unavailable), None) => {
                                let next_free = model
                                    .iter()
                                    .filter(|key| !key.disabled)
                                    .filter_map(|key| key.cooling_until)
                                    .min();
                                prop_assert_eq!(unavailable.next_free, next_free);
                                prop_assert_eq!(unavailable.disabled, model.iter().filter(|key| key.disabled).count());
                            }
                            (real, expected) => prop_assert!(false, "pool gave {:?}, model {:?}", real.map(|lease| lease.index()), expected),
                        }
                    }
                    KeyOp::Report(index, code, hint) if !held.is_empty() => {
                        let lease = &held[index % held.len()];
                        let key = &mut model[lease.index()];
                        let hint = hint.map(Duration::from_secs);
                        let cool = |key: &mut ModelKey, cooldown: Duration| {
                            let until = now + cooldown;
                            key.cooling_until = Some(key.cooling_until.map_or(until, |running| running.max(until)));
                        };
                        let outcome = match code {
                            0 => { key.streak = 0; KeyOutcome::Success }
                            1 => {
                                key.streak += 1;
                                let default = (Duration::from_secs(1) * 2_u32.pow(key.streak - 1)).min(Duration::from_secs(4));
                                cool(key, hint.unwrap_or(default));
                                KeyOutcome::RateLimited { retry_after: hint }
                            }
                            2 => { key.disabled = true; KeyOutcome::Rejected { reason: "401".into() } }
                            3 => {
                                cool(key, hint.map_or(Duration::from_secs(10), |hint| hint.max(Duration::from_secs(10))));
                                KeyOutcome::QuotaExhausted { retry_after: hint }
                            }
                            _ => KeyOutcome::Failure(FailureClass::Transient),
                        };
                        lease.report(outcome);
                    }
                    KeyOp::Release(index) if !held.is_empty() => {
                        let lease = held.remove(index % held.len());
                        model[lease.index()].in_flight -= 1;
                    }
                    KeyOp::Report(..) | KeyOp::Release(_) => {}
                    KeyOp::Wait(millis) => tokio::time::advance(Duration::from_millis(millis)).await,
                }
                for (stats, key) in pool.stats().iter().zip(&model) {
                    prop_assert_eq!(stats.in_flight, key.in_flight);
                    prop_assert_eq!(stats.disabled.is_some(), key.disabled);
                    prop_assert_eq!(stats.cooling_until, key.cooling_until);
                }
            }
            Ok(())
        })?;
    }
}
