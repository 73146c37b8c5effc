//! Delays between attempts: full or decorrelated jitter, a cap, a number of attempts and a
//! deadline ([`Backoff`] under a [`BackoffPolicy`]), the server's `retry-after` hints
//! ([`parse_retry_after`]), the small random source behind the jitter ([`SmallRng`]), and
//! [`later`], deadline arithmetic that cannot overflow.

use std::time::{Duration, SystemTime};

/// How the random part of a delay is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `0..=min(cap, base * 2^attempt)` (AWS's "full jitter").
    Full,
    /// Uniform in `base..=min(cap, previous * 3)` (AWS's "decorrelated jitter").
    Decorrelated,
    /// No randomness: `min(cap, base * 2^attempt)`. For tests and for callers who jitter elsewhere.
    None,
}

/// The shape of a backoff: how long, how often, and how far a server's hint is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Not `#[non_exhaustive]`: built with `..Default::default()`.
pub struct BackoffPolicy {
    /// The first delay's scale.
    pub base: Duration,
    /// No delay exceeds this (server hints are bounded by `max_hint` instead).
    pub cap: Duration,
    /// Attempts in all, the first included; `1` means never retry.
    pub max_attempts: u32,
    /// The whole operation, retries and delays included, ends within this.
    pub total_deadline: Duration,
    /// The random part.
    pub jitter: Jitter,
    /// A server's `retry-after` up to this long is waited for as given; a longer one is not
    /// slept on (the caller rotates keys or fails, carrying the hint).
    pub max_hint: Duration,
}

impl Default for BackoffPolicy {
    /// The official Perplexity and OpenAI SDKs' shape (0.5 s doubling to 8 s), with full
    /// jitter, 4 attempts, a 120 s deadline and hints trusted up to 30 s.
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
            max_attempts: 4,
            total_deadline: Duration::from_secs(120),
            jitter: Jitter::Full,
            max_hint: Duration::from_secs(30),
        }
    }
}

/// A source of randomness for jitter; inject a fixed one to make delays deterministic.
pub trait RandomSource: Send {
    /// A number uniformly distributed in `[0, 1)`.
    fn fraction(&mut self) -> f64;
}

/// The default random source: xorshift64* seeded from the standard library's per-process
/// random hasher keys. Not cryptographic; jitter does not need to be.
#[derive(Debug, Clone)]
pub struct SmallRng(u64);

impl SmallRng {
    /// A generator seeded from `seed` (zero is replaced by a fixed odd constant).
    pub fn seeded(seed: u64) -> Self {
        SmallRng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator seeded differently in every process and every call.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        SmallRng::seeded(hasher.finish())
    }

    /// The next 64 random bits. (The workspace's one small generator: the simulator's
    /// content, the soak's fault mix and the benches' inputs follow it from their seeds.)
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (0 when `bound` is 0); the modulo bias is negligible for
    /// the small bounds it serves.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % (bound.max(1) as u64)) as usize
    }
}

impl RandomSource for SmallRng {
    fn fraction(&mut self) -> f64 {
        let bits = self.next_u64() >> 11;
        bits as f64 / (1_u64 << 53) as f64
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delay {
    /// Wait this long, then try again.
    Retry(Duration),
    /// The server asked for a wait longer than [`BackoffPolicy::max_hint`]: do not sleep on
    /// it; rotate to another key or fail, carrying the hint.
    HintTooLong(Duration),
    /// The attempts are spent.
    Exhausted,
}

/// The delays of one operation's retries: a [`BackoffPolicy`] plus its running state.
pub struct Backoff {
    policy: BackoffPolicy,
    /// Failed attempts so far.
    failures: u32,
    previous: Duration,
    random: Box<dyn RandomSource>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Backoff")
            .field("policy", &self.policy)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A backoff with a randomly seeded source.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff::with_random(policy, Box::new(SmallRng::from_entropy()))
    }

    /// A backoff drawing its jitter from `random`.
    pub fn with_random(policy: BackoffPolicy, random: Box<dyn RandomSource>) -> Self {
        Backoff {
            policy,
            failures: 0,
            previous: policy.base,
            random,
        }
    }

    /// The policy this backoff follows.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Records a failed attempt and says what to do next. `hint` is the server's
    /// `retry-after`, if it sent one (see [`parse_retry_after`]).
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Delay {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.policy.max_attempts {
            return Delay::Exhausted;
        }
        if let Some(hint) = hint {
            if hint > self.policy.max_hint {
                return Delay::HintTooLong(hint);
            }
            self.previous = hint.max(self.policy.base);
            return Delay::Retry(hint);
        }
        let exponent = (self.failures - 1).min(31);
        let ceiling = self
            .policy
            .base
            .saturating_mul(1_u32 << exponent)
            .min(self.policy.cap);
        let delay = match self.policy.jitter {
            Jitter::None => ceiling,
            Jitter::Full => ceiling.mul_f64(self.random.fraction()),
            Jitter::Decorrelated => {
                let low = self.policy.base;
                let high = self
                    .previous
                    .saturating_mul(3)
                    .min(self.policy.cap)
                    .max(low);
                low + (high - low).mul_f64(self.random.fraction())
            }
        };
        self.previous = delay;
        Delay::Retry(delay)
    }
}

/// The wait a server asked for: `retry-after-ms` (milliseconds) wins over `Retry-After`
/// (whole seconds, or an HTTP date measured from `now`). Unparsable values are no hint; a
/// date in the past is a zero wait.
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(millis) = retry_after_ms.and_then(|value| value.trim().parse::<f64>().ok())
        && millis.is_finite()
        && millis >= 0.0
    {
        // Clamped before any arithmetic: `1e300` is a day, not a panic.
        let seconds = (millis / 1000.0).min(MAX_RETRY_AFTER.as_secs_f64());
        return Some(Duration::try_from_secs_f64(seconds).unwrap_or(MAX_RETRY_AFTER));
    }
    let value = retry_after?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    if value.bytes().all(|byte| byte.is_ascii_digit()) && !value.is_empty() {
        return Some(MAX_RETRY_AFTER); // More digits than a u64 holds: as long as allowed.
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The longest wait a server's hint can ask for; longer ones are clamped to it when parsed
/// (and then refused by the backoff's `max_hint`, never slept on).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `now + after`, saturating far in the future instead of overflowing: deadlines and
/// cooldowns built from outside numbers never panic.
pub fn later(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Thirty years: "never" for deadlines, without overflowing an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    /// Always the same fraction, so delays are exact.
    struct Fixed(f64);
    impl RandomSource for Fixed {
        fn fraction(&mut self) -> f64 {
            self.0
        }
    }

    fn policy(jitter: Jitter) -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1_000),
            max_attempts: 6,
            jitter,
            ..BackoffPolicy::default()
        }
    }

    #[test]
    fn exponential_without_jitter_doubles_to_the_cap_then_stops() {
        let mut backoff = Backoff::new(policy(Jitter::None));
        let delays: Vec<Delay> = (0..6).map(|_| backoff.next_delay(None)).collect();
        let millis = |value| Delay::Retry(Duration::from_millis(value));
        assert_eq!(
            delays,
            [
                millis(100),
                millis(200),
                millis(400),
                millis(800),
                millis(1_000),
                Delay::Exhausted
            ]
        );
    }

    #[test]
    fn full_jitter_scales_the_exponential_ceiling() {
        let mut backoff = Backoff::with_random(policy(Jitter::Full), Box::new(Fixed(0.5)));
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(50))
        );
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(200))
        );
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_three_times_the_previous() {
        let mut backoff = Backoff::with_random(policy(Jitter::Decorrelated), Box::new(Fixed(1.0)));
        // With the top of the range every time: 300, 900, then the cap.
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(300))
        );
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(900))
        );
        assert_eq!(
            backoff.next_delay(None),
            Delay::Retry(Duration::from_millis(1_000))
        );
        let mut random = Backoff::new(policy(Jitter::Decorrelated));
        for _ in 0..5 {
            if let Delay::Retry(delay) = random.next_delay(None) {
                assert!(
                    (Duration::from_millis(100)..=Duration::from_millis(1_000)).contains(&delay)
                );
            }
        }
    }

    #[test]
    fn a_hint_within_the_maximum_wins_and_a_longer_one_is_not_slept_on() {
        let mut backoff = Backoff::new(BackoffPolicy {
            max_hint: Duration::from_secs(5),
            ..policy(Jitter::Full)
        });
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3))),
            Delay::Retry(Duration::from_secs(3)),
            "the hint may exceed the cap: the server knows best"
        );
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(41))),
            Delay::HintTooLong(Duration::from_secs(41))
        );
    }

    #[test]
    fn retry_after_headers_in_every_form() {
        let now = httpdate::parse_http_date("Sun, 29 Nov 2026 01:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(Some("1500"), Some("9"), now),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            parse_retry_after(None, Some(" 7 "), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(None, Some("Sun, 29 Nov 2026 01:00:41 GMT"), now),
            Some(Duration::from_secs(41))
        );
        assert_eq!(
            parse_retry_after(None, Some("Sunday, 29-Nov-26 01:00:02 GMT"), now),
            Some(Duration::from_secs(2)),
            "the obsolete RFC 850 form is accepted too"
        );
        assert_eq!(
            parse_retry_after(None, Some("Sun, 29 Nov 2026 00:59:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(Some("soon"), Some("-3"), now), None);
        assert_eq!(parse_retry_after(Some("-5"), None, now), None);
        assert_eq!(parse_retry_after(None, None, now), None);
    }
}
