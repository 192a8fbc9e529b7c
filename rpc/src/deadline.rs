//! A deadline on a future whose timer is made only if it is needed.
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

use tokio::task::coop::Unconstrained;
use tokio::time::{Instant, Sleep};

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
