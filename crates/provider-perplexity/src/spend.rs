//! The spending limit ([`PerplexityConfig::budget`](crate::PerplexityConfig::budget)) around
//! every answer: a hold taken before the request is sent, refused with
//! [`ErrorKind::Budget`](chat_core::ErrorKind::Budget) when it does not fit, and settled with
//! the cost the service reported when the answer ends, whichever way it ends.

use std::time::Duration;

use chat_core::{ChatEvent, ChatResponse, ChatStream, Error, Usage};
use futures_util::StreamExt;
use resilience::Budget;
use resilience::spend::{Held, Spend};

/// The cost an answer's usage reports, in US dollars.
fn cost(usage: Option<&Usage>) -> Option<f64> {
    usage
        .and_then(|usage| usage.cost.as_ref())
        .map(|cost| cost.total_cost)
}

/// The cost of an answer or of a failure that reported one (a cancelled run, an
/// interruption after the usage arrived).
pub(crate) fn cost_of(result: &Result<ChatResponse, Error>) -> Option<f64> {
    match result {
        Ok(response) => cost(response.usage.as_ref()),
        Err(error) => cost(error.partial_usage()),
    }
}

/// The refusal of a request whose hold does not fit.
fn refusal(spend: &Spend) -> Error {
    Error::budget(format!(
        "budget reached: {spend}; nothing was sent (raise [budget] usd, or wait for the next period)"
    ))
}

/// A hold for one answer that may take `for_at_most`; `None` when no limit is set.
pub(crate) async fn admit(
    budget: Option<&Budget>,
    for_at_most: Duration,
) -> Result<Option<Held>, Error> {
    let Some(budget) = budget else {
        return Ok(None);
    };
    match budget.admit(for_at_most).await {
        Ok(held) => Ok(Some(held)),
        Err(spend) => Err(refusal(&spend)),
    }
}

/// Settles `held` with what `result` reported it cost.
pub(crate) async fn settle(held: Option<Held>, result: &Result<ChatResponse, Error>) {
    if let Some(held) = held {
        held.settle(cost_of(result)).await;
    }
}

/// `answer`'s cost counted: under a hold admitted before its first event is asked for when
/// `admission` gives how long it may take, else (an attached run another call started)
/// added as it is reported. Settled at its `Done` or its error with the reported cost;
/// dropped before either, a hold is charged in full (the request may have been billed; its
/// cost is unknown).
pub(crate) fn metered(
    budget: std::sync::Arc<Budget>,
    admission: Option<Duration>,
    answer: ChatStream,
) -> ChatStream {
    Box::pin(async_stream::stream! {
        let mut held = None;
        if let Some(for_at_most) = admission {
            match admit(Some(&budget), for_at_most).await {
                Ok(hold) => held = hold,
                Err(refused) => {
                    yield Err(refused);
                    return;
                }
            }
        }
        let mut answer = answer;
        let mut settled = false;
        while let Some(item) = answer.next().await {
            let reported = match &item {
                Ok(ChatEvent::Done(response)) => Some(cost(response.usage.as_ref())),
                Err(error) => Some(cost(error.partial_usage())),
                Ok(_) => None,
            };
            if let Some(reported) = reported.filter(|_| !settled) {
                settled = true;
                match held.take() {
                    Some(held) => held.settle(reported).await,
                    None => budget.charge(reported.unwrap_or(0.0)).await,
                }
            }
            yield item;
        }
        // An answer that ended with neither (it should not): nothing reported, nothing
        // charged.
        if let Some(held) = held.take() {
            held.settle(None).await;
        }
    })
}
