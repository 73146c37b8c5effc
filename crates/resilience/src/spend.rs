//! A cap on what a service reports it charged, shared by every process that shares a
//! [`SpendLedger`].
//!
//! [`Budget`] is what a client holds: [`Budget::admit`] before a request is sent, then
//! [`Held::settle`] with the cost the service reported. A request in flight holds an amount
//! (the largest answer of the period so far, at least [`SpendLimit::hold_usd`]) and is
//! admitted only when that fits under the limit beside the period's spend and the other
//! holds, so two workers cannot both start on the last cent: admission and hold are one
//! atomic step in the ledger. Spend stays within the limit as long as no answer costs more
//! than it held; one that does passes it by the difference, and nothing more is admitted.
//!
//! Amounts are kept in whole micro-dollars (a reported cost is rounded up), so that sums are
//! exact and a ledger in Redis or SQLite adds integers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// How long a spend is counted before it starts again, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpendPeriod {
    /// A calendar day, UTC.
    Day,
    /// A calendar month, UTC.
    Month,
    /// Never: the limit is on everything ever spent.
    Total,
}

impl SpendPeriod {
    /// `day`, `month` or `total`, as a config file spells them.
    pub fn parse(name: &str) -> Option<SpendPeriod> {
        match name {
            "day" => Some(SpendPeriod::Day),
            "month" => Some(SpendPeriod::Month),
            "total" => Some(SpendPeriod::Total),
            _ => None,
        }
    }

    /// The name [`parse`](SpendPeriod::parse) reads.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendPeriod::Day => "day",
            SpendPeriod::Month => "month",
            SpendPeriod::Total => "total",
        }
    }

    /// The name of the period that holds `at`, the same in every process: `day:2026-12-07`,
    /// `month:2026-12` or `total`.
    pub fn name_at(self, at: SystemTime) -> String {
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let (year, month, day) = civil_date(seconds / 86_400);
        match self {
            SpendPeriod::Day => format!("day:{year:04}-{month:02}-{day:02}"),
            SpendPeriod::Month => format!("month:{year:04}-{month:02}"),
            SpendPeriod::Total => "total".to_owned(),
        }
    }

    /// How long a ledger keeps a period's figures after it was last written: long past its
    /// end, so `pplx budget` can still show yesterday's. `None`: forever.
    pub fn keep_for(self) -> Option<Duration> {
        match self {
            SpendPeriod::Day => Some(Duration::from_secs(40 * 86_400)),
            SpendPeriod::Month => Some(Duration::from_secs(400 * 86_400)),
            SpendPeriod::Total => None,
        }
    }
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's civil-from-days),
/// as periods are named.
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A spending limit: how much, over which period, and what a request in flight holds.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SpendLimit {
    /// The limit in US dollars.
    pub usd: f64,
    /// The period it applies to.
    pub period: SpendPeriod,
    /// The least a request in flight holds of the limit until its cost is known (it holds
    /// the period's largest answer so far when that is more).
    pub hold_usd: f64,
}

impl SpendLimit {
    /// What a request holds when nothing larger was seen: a cent, about one search-grounded
    /// answer.
    pub const DEFAULT_HOLD_USD: f64 = 0.01;

    /// `usd` a `period`, holding [`DEFAULT_HOLD_USD`](SpendLimit::DEFAULT_HOLD_USD).
    pub fn new(usd: f64, period: SpendPeriod) -> Self {
        SpendLimit {
            usd,
            period,
            hold_usd: SpendLimit::DEFAULT_HOLD_USD,
        }
    }

    /// Whether the amounts are usable.
    ///
    /// # Errors
    /// What is wrong, in words: a limit that is not a positive number of dollars, or a hold
    /// that is negative or not a number.
    pub fn check(&self) -> Result<(), String> {
        if !(self.usd.is_finite() && self.usd > 0.0) {
            return Err(format!(
                "a budget is a positive number of US dollars, not {}",
                self.usd
            ));
        }
        if !(self.hold_usd.is_finite() && self.hold_usd >= 0.0) {
            return Err(format!(
                "what a request holds is zero or more US dollars, not {}",
                self.hold_usd
            ));
        }
        Ok(())
    }
}

/// US dollars as whole micro-dollars, rounded up; what is not a finite, positive amount
/// counts as nothing, and no amount counts as more than a million dollars.
pub fn micros(usd: f64) -> u64 {
    if !(usd.is_finite() && usd > 0.0) {
        return 0;
    }
    (usd.min(1e6) * 1e6).ceil() as u64
}

/// Micro-dollars as US dollars.
pub fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A period's figures in a ledger, in micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// Reported costs added so far.
    pub spent: u64,
    /// What requests in flight hold.
    pub held: u64,
    /// How many requests are in flight.
    pub holds: u32,
    /// The largest single cost added.
    pub largest: u64,
}

impl Tally {
    /// Figures (for a ledger's implementation).
    pub fn new(spent: u64, held: u64, holds: u32, largest: u64) -> Self {
        Tally {
            spent,
            held,
            holds,
            largest,
        }
    }
}

/// The admission rule every ledger applies to a period's `tally`: the hold is the larger of
/// `least` and the period's largest cost, and it is taken only when it fits beside what is
/// spent and held (their sum at most `limit`).
///
/// # Errors
/// The tally, when the hold does not fit.
pub fn fitting_hold(tally: Tally, limit: u64, least: u64) -> Result<u64, Tally> {
    let amount = least.max(tally.largest);
    if tally
        .spent
        .saturating_add(tally.held)
        .saturating_add(amount)
        > limit
    {
        return Err(tally);
    }
    Ok(amount)
}

/// What a ledger's calls return.
pub type SpendFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where spend is counted: this process ([`LocalLedger`]), a database one user's processes
/// share, or a server a fleet shares. Every call is one atomic step: two processes calling
/// [`hold`](SpendLedger::hold) at once never both get the last of a limit.
pub trait SpendLedger: Send + Sync + fmt::Debug {
    /// In `period`: forgets holds whose time is up; then takes the larger of `least` and the
    /// period's largest cost, and when it fits beside what is spent and held (their sum at
    /// most `limit`), holds it as `id` for `ttl` and answers the amount held; else answers
    /// the figures that refused it.
    fn hold<'a>(
        &'a self,
        period: &'a str,
        id: &'a str,
        limit: u64,
        least: u64,
        ttl: Duration,
    ) -> SpendFuture<'a, Result<u64, Tally>>;

    /// In `period`: lets go of hold `id` (when given and still there) and adds `cost`,
    /// keeping the period's figures for `keep` after (`None`: forever).
    fn settle<'a>(
        &'a self,
        period: &'a str,
        id: Option<&'a str>,
        cost: u64,
        keep: Option<Duration>,
    ) -> SpendFuture<'a, ()>;

    /// The figures of `period` (holds whose time is up are not counted).
    fn tally<'a>(&'a self, period: &'a str) -> SpendFuture<'a, Tally>;
}

/// This process only: the default ledger, and what a shared one falls back to when its
/// server is out of reach.
#[derive(Debug, Default)]
pub struct LocalLedger {
    periods: Mutex<HashMap<String, Book>>,
}

#[derive(Debug, Default)]
struct Book {
    spent: u64,
    largest: u64,
    /// Hold id to its amount and when its time is up.
    holds: HashMap<String, (u64, SystemTime)>,
}

impl Book {
    fn tally(&mut self, now: SystemTime) -> Tally {
        self.holds.retain(|_, (_, until)| *until > now);
        let held = self.holds.values().map(|(amount, _)| amount).sum();
        let holds = u32::try_from(self.holds.len()).unwrap_or(u32::MAX);
        Tally::new(self.spent, held, holds, self.largest)
    }
}

impl LocalLedger {
    /// An empty one.
    pub fn new() -> Self {
        LocalLedger::default()
    }

    /// [`SpendLedger::hold`] at once.
    ///
    /// # Errors
    /// The figures that refused it.
    pub fn hold_now(
        &self,
        period: &str,
        id: &str,
        limit: u64,
        least: u64,
        ttl: Duration,
    ) -> Result<u64, Tally> {
        let now = SystemTime::now();
        let mut periods = self.periods.lock();
        let book = periods.entry(period.to_owned()).or_default();
        let amount = fitting_hold(book.tally(now), limit, least)?;
        book.holds
            .insert(id.to_owned(), (amount, now.checked_add(ttl).unwrap_or(now)));
        Ok(amount)
    }

    /// [`SpendLedger::settle`] at once (nothing is kept past this process).
    pub fn settle_now(&self, period: &str, id: Option<&str>, cost: u64) {
        let mut periods = self.periods.lock();
        let book = periods.entry(period.to_owned()).or_default();
        if let Some(id) = id {
            book.holds.remove(id);
        }
        book.spent = book.spent.saturating_add(cost);
        book.largest = book.largest.max(cost);
    }

    /// [`SpendLedger::tally`] at once.
    pub fn tally_now(&self, period: &str) -> Tally {
        let mut periods = self.periods.lock();
        periods
            .get_mut(period)
            .map(|book| book.tally(SystemTime::now()))
            .unwrap_or_default()
    }
}

impl SpendLedger for LocalLedger {
    fn hold<'a>(
        &'a self,
        period: &'a str,
        id: &'a str,
        limit: u64,
        least: u64,
        ttl: Duration,
    ) -> SpendFuture<'a, Result<u64, Tally>> {
        Box::pin(std::future::ready(
            self.hold_now(period, id, limit, least, ttl),
        ))
    }

    fn settle<'a>(
        &'a self,
        period: &'a str,
        id: Option<&'a str>,
        cost: u64,
        _keep: Option<Duration>,
    ) -> SpendFuture<'a, ()> {
        self.settle_now(period, id, cost);
        Box::pin(std::future::ready(()))
    }

    fn tally<'a>(&'a self, period: &'a str) -> SpendFuture<'a, Tally> {
        Box::pin(std::future::ready(self.tally_now(period)))
    }
}

/// A limit's figures now, for people: what [`Budget::spend`] answers and what a refusal
/// carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Spend {
    /// The limit.
    pub limit: SpendLimit,
    /// The period, by name (`day:2026-12-07`).
    pub period: String,
    /// Reported costs in the period, US dollars.
    pub spent_usd: f64,
    /// What requests in flight hold, US dollars.
    pub held_usd: f64,
    /// How many requests are in flight.
    pub in_flight: u32,
}

impl fmt::Display for Spend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.limit.period {
            SpendPeriod::Day => " a day",
            SpendPeriod::Month => " a month",
            SpendPeriod::Total => " in total",
        };
        write!(
            formatter,
            "{} spent of {}{per} ({})",
            dollars(self.spent_usd),
            dollars(self.limit.usd),
            self.period
        )?;
        if self.in_flight > 0 {
            write!(
                formatter,
                ", {} held by {} request(s) in flight",
                dollars(self.held_usd),
                self.in_flight
            )?;
        }
        Ok(())
    }
}

/// `$0.0123`: to the micro-dollar, without trailing zeros past the cents.
pub fn dollars(usd: f64) -> String {
    let mut text = format!("{usd:.6}");
    while text.ends_with('0') && text.len() > text.find('.').map_or(0, |dot| dot + 3) {
        text.pop();
    }
    format!("${text}")
}

/// A spending limit and the ledger it is counted in. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Budget {
    limit: SpendLimit,
    ledger: Arc<dyn SpendLedger>,
    /// Makes hold ids unique among this process's holds; the prefix among processes.
    next_hold: AtomicU64,
    prefix: String,
}

impl Budget {
    /// `limit`, counted in `ledger`.
    pub fn new(limit: SpendLimit, ledger: Arc<dyn SpendLedger>) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Budget {
            limit,
            ledger,
            next_hold: AtomicU64::new(0),
            prefix: format!("{}-{started:x}", std::process::id()),
        }
    }

    /// The limit.
    pub fn limit(&self) -> SpendLimit {
        self.limit
    }

    /// Admits one request that may take up to `for_at_most` (its hold lapses after that, so
    /// a process that dies holding does not keep the limit held).
    ///
    /// # Errors
    /// The figures, when this request's hold does not fit beside the period's spend and
    /// the other requests' holds.
    pub async fn admit(&self, for_at_most: Duration) -> Result<Held, Spend> {
        let period = self.limit.period.name_at(SystemTime::now());
        let number = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{number}", self.prefix);
        let limit = micros(self.limit.usd);
        let least = micros(self.limit.hold_usd);
        match self
            .ledger
            .hold(&period, &id, limit, least, for_at_most)
            .await
        {
            Ok(amount) => Ok(Held {
                ledger: self.ledger.clone(),
                keep: self.limit.period.keep_for(),
                period,
                id,
                amount,
                settled: false,
            }),
            Err(tally) => Err(self.spend_of(period, tally)),
        }
    }

    /// Adds a cost that held nothing (an answer read from a run another call started).
    pub async fn charge(&self, cost_usd: f64) {
        let period = self.limit.period.name_at(SystemTime::now());
        self.ledger
            .settle(
                &period,
                None,
                micros(cost_usd),
                self.limit.period.keep_for(),
            )
            .await;
    }

    /// The current period's figures.
    pub async fn spend(&self) -> Spend {
        let period = self.limit.period.name_at(SystemTime::now());
        let tally = self.ledger.tally(&period).await;
        self.spend_of(period, tally)
    }

    fn spend_of(&self, period: String, tally: Tally) -> Spend {
        Spend {
            limit: self.limit,
            period,
            spent_usd: usd(tally.spent),
            held_usd: usd(tally.held),
            in_flight: tally.holds,
        }
    }
}

/// One admitted request's hold. [`settle`](Held::settle) it with the reported cost; dropped
/// unsettled (the request was abandoned and its cost is unknown), it is charged what it
/// held.
#[derive(Debug)]
pub struct Held {
    ledger: Arc<dyn SpendLedger>,
    period: String,
    id: String,
    amount: u64,
    keep: Option<Duration>,
    settled: bool,
}

impl Held {
    /// What this request holds, US dollars.
    pub fn held_usd(&self) -> f64 {
        usd(self.amount)
    }

    /// Lets go of the hold and adds `cost_usd`, the cost the service reported (`None` or
    /// zero when it charged nothing: the request failed before an answer).
    pub async fn settle(mut self, cost_usd: Option<f64>) {
        self.settled = true;
        let cost = cost_usd.map_or(0, micros);
        self.ledger
            .settle(&self.period, Some(&self.id), cost, self.keep)
            .await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let ledger = self.ledger.clone();
        let period = std::mem::take(&mut self.period);
        let id = std::mem::take(&mut self.id);
        let (amount, keep) = (self.amount, self.keep);
        // Without a runtime (the process is ending) the hold lapses in its own time.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                ledger.settle(&period, Some(&id), amount, keep).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(usd: f64, hold_usd: f64) -> (Budget, Arc<LocalLedger>) {
        let ledger = Arc::new(LocalLedger::new());
        let mut limit = SpendLimit::new(usd, SpendPeriod::Day);
        limit.hold_usd = hold_usd;
        (Budget::new(limit, ledger.clone()), ledger)
    }

    #[test]
    fn periods_are_named_by_their_utc_calendar() {
        // 2026-12-07T23:59:59Z and a second later.
        let evening = UNIX_EPOCH + Duration::from_secs(1_796_687_999);
        let next = evening + Duration::from_secs(1);
        assert_eq!(SpendPeriod::Day.name_at(evening), "day:2026-12-07");
        assert_eq!(SpendPeriod::Day.name_at(next), "day:2026-12-08");
        assert_eq!(SpendPeriod::Month.name_at(evening), "month:2026-12");
        assert_eq!(SpendPeriod::Total.name_at(next), "total");
        assert_eq!(
            SpendPeriod::Month.name_at(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "month:2000-02",
            "2000-02-29, a leap day"
        );
        for period in [SpendPeriod::Day, SpendPeriod::Month, SpendPeriod::Total] {
            assert_eq!(SpendPeriod::parse(period.as_str()), Some(period));
        }
        assert_eq!(SpendPeriod::parse("week"), None);
    }

    #[test]
    fn dollars_are_said_to_the_micro_dollar_without_trailing_zeros() {
        assert_eq!(dollars(0.025), "$0.025");
        assert_eq!(dollars(5.0), "$5.00");
        assert_eq!(dollars(0.0062821), "$0.006282");
        assert_eq!(dollars(12.5), "$12.50");
    }

    #[test]
    fn amounts_from_outside_are_clamped_and_rounded_up() {
        assert_eq!(micros(0.006_282_1), 6_283);
        assert_eq!(micros(-1.0), 0);
        assert_eq!(micros(f64::NAN), 0);
        assert_eq!(micros(f64::INFINITY), 0);
        assert_eq!(micros(1e300), 1_000_000_000_000);
        assert!(SpendLimit::new(0.0, SpendPeriod::Day).check().is_err());
        assert!(SpendLimit::new(f64::NAN, SpendPeriod::Day).check().is_err());
        let mut negative_hold = SpendLimit::new(1.0, SpendPeriod::Day);
        negative_hold.hold_usd = -0.5;
        assert!(negative_hold.check().is_err());
        assert!(SpendLimit::new(5.0, SpendPeriod::Month).check().is_ok());
    }

    #[tokio::test]
    async fn requests_in_flight_hold_their_share_so_the_last_cent_is_spent_once() {
        let (budget, _ledger) = budget(0.03, 0.01);
        let first = budget.admit(Duration::from_secs(60)).await.unwrap();
        let second = budget.admit(Duration::from_secs(60)).await.unwrap();
        let third = budget.admit(Duration::from_secs(60)).await.unwrap();
        let refused = budget.admit(Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(refused.spent_usd, 0.0);
        assert_eq!(refused.in_flight, 3);
        assert!((refused.held_usd - 0.03).abs() < 1e-9, "{refused}");
        // The first answer cost less than it held: its change is free again.
        first.settle(Some(0.004)).await;
        second.settle(None).await;
        let fourth = budget.admit(Duration::from_secs(60)).await.unwrap();
        // Largest cost so far (0.004) is under the least hold: a cent is held.
        assert!((fourth.held_usd() - 0.01).abs() < 1e-9);
        let spend = budget.spend().await;
        assert_eq!(spend.in_flight, 2);
        assert!((spend.spent_usd - 0.004).abs() < 1e-9);
        third.settle(Some(0.02)).await;
        // 0.024 spent, 0.01 held, and the next would hold the period's largest answer
        // (0.02): 0.054 does not fit in 0.03.
        let refused = budget.admit(Duration::from_secs(60)).await.unwrap_err();
        assert!(
            refused.to_string().contains("$0.024 spent of $0.03 a day"),
            "{refused}"
        );
        fourth.settle(Some(0.001)).await;
        // 0.025 spent, nothing held: a cent would fit, but an answer like the largest of the
        // period would not.
        let refused = budget.admit(Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(refused.in_flight, 0);
        assert!((refused.spent_usd - 0.025).abs() < 1e-9);
    }

    #[tokio::test]
    async fn an_abandoned_request_is_charged_what_it_held_and_a_lapsed_hold_frees_its_share() {
        let (budget, ledger) = budget(1.0, 0.25);
        let abandoned = budget.admit(Duration::from_secs(60)).await.unwrap();
        drop(abandoned);
        // The drop's settle runs on the runtime: let it.
        tokio::task::yield_now().await;
        let spend = budget.spend().await;
        assert_eq!((spend.spent_usd, spend.in_flight), (0.25, 0));
        // A hold whose time is up (its process died) no longer counts.
        let lapsed = budget.admit(Duration::ZERO).await.unwrap();
        std::mem::forget(lapsed);
        assert_eq!(budget.spend().await.in_flight, 0);
        let period = SpendPeriod::Day.name_at(SystemTime::now());
        assert_eq!(ledger.tally_now(&period).spent, 250_000);
        budget.charge(0.5).await;
        assert_eq!(ledger.tally_now(&period).spent, 750_000);
    }
}
