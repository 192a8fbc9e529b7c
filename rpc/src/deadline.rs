//! Deadlines, both sides: how a call's deadline is fixed from its timeout
//! and the deadline it inherits, the arithmetic that never overflows, and a
//! future bounded by a deadline whose timer is made only if it is needed.
//! (The client connection's one timer for all its calls is in
//! `client/connection/deadlines.rs`.)
//!
//! `tokio::time::timeout_at` embeds a `Sleep` (a timer entry of a few hundred
//! bytes) in the future and registers it on the first poll that finds the
//! inner future pending. Most handlers finish on their first poll, and a
//! spawned handler's future is moved several times on its way into its task,
//! each move a copy of the whole future, timer included. So here the timer is
//! boxed and made only on the first pending poll: a handler that is ready at
//! once costs no timer, and its future stays small to move.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use std::time::Duration;

use tokio::task::coop::Unconstrained;
use tokio::time::{Instant, Sleep};

/// About 30 years: further than any call lives. The longest budget a call
/// is given (a longer timeout means the same: no deadline).
pub(crate) const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `start + d`, or a deadline so far away that it never comes if that
/// overflows (`Duration::MAX` means "no deadline", not a panic).
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    within(start, d).0
}

/// [`after`], and the time from `start` to it (without subtracting
/// one instant from another, which costs more than it looks).
#[inline]
pub(crate) fn within(start: Instant, d: Duration) -> (Instant, Duration) {
    match start.checked_add(d) {
        Some(at) => (at, d),
        None => (start + FAR, FAR),
    }
}

/// A call's deadline and budget, fixed when it starts at `now`: `timeout`
/// from now, or the deadline it inherited (made inside a handler) if that
/// is earlier. Budgets propagate through call chains this way.
#[inline]
pub(crate) fn for_call(
    now: Instant,
    timeout: Duration,
    inherited: Option<Instant>,
) -> (Instant, Duration) {
    let (own, budget) = within(now, timeout);
    match inherited {
        Some(inherited) if inherited < own => (inherited, inherited.saturating_duration_since(now)),
        _ => (own, budget),
    }
}

/// Runs `fut` until `deadline`: `Some(output)`, or `None` if the deadline
/// passed first. Like `timeout_at`, the future is polled before the clock is
/// looked at, so a ready future is never lost to an expired deadline.
pub(crate) async fn run_until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut timer: Option<Pin<Box<Unconstrained<Sleep>>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // Unconstrained, as `timeout_at` polls its timer: a future that spends
        // the task's whole coop budget on every poll must still time out.
        let timer = timer.get_or_insert_with(|| {
            Box::pin(tokio::task::coop::unconstrained(tokio::time::sleep_until(
                deadline,
            )))
        });
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn ready_futures_win_and_pending_ones_time_out_at_the_deadline() {
        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(run_until(past, async { 7 }).await, Some(7));

        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let out = run_until(deadline, tokio::time::sleep(Duration::from_secs(5))).await;
        assert_eq!(out, None);
        assert_eq!(Instant::now(), deadline);

        let out = run_until(deadline + Duration::from_secs(1), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            "done"
        })
        .await;
        assert_eq!(out, Some("done"));
    }

    // Real time: a task that is always runnable never lets a paused clock
    // advance.
    #[tokio::test]
    async fn a_future_that_spends_its_coop_budget_on_every_poll_still_times_out() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let busy = async {
            loop {
                tokio::task::consume_budget().await;
            }
        };
        let out = tokio::time::timeout(Duration::from_secs(5), run_until(deadline, busy)).await;
        assert_eq!(out, Ok(None), "the deadline must fire");
    }
}
