//! [`Manual`]: a set of servers the program changes at run time.

use super::{SetStream, Target};
use crate::Error;
use futures::stream::{self, Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;

/// A set of servers that a [`ManualHandle`] replaces at run time: for a
/// registry of your own, or for tests.
///
/// The stream yields the current set when first polled, then each new set.
/// Sets made faster than the consumer takes them are not queued: the latest
/// wins, as only the current set matters. Once every handle is dropped the
/// stream yields any set it has not yet and then ends; the balanced channel
/// keeps the last set.
///
/// ```
/// use futures::StreamExt;
/// use rpc::discover::{Manual, Target};
/// use std::net::SocketAddr;
///
/// # #[tokio::main] async fn main() {
/// let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
/// let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
/// let (mut source, handle) = Manual::new([Target::from(a)]);
/// assert_eq!(source.next().await.unwrap().unwrap(), vec![Target::from(a)]);
///
/// handle.set([Target::from(a), Target::from(b)]);
/// assert_eq!(source.next().await.unwrap().unwrap().len(), 2);
/// # }
/// ```
pub struct Manual {
    inner: SetStream,
}

/// Replaces the set of a [`Manual`] source. Clones share the source.
#[derive(Clone)]
pub struct ManualHandle {
    // In an `Arc` so that the stream ends when the last clone goes, whatever
    // the tokio version's own `Sender: Clone` does with its receivers.
    tx: Arc<watch::Sender<Vec<Target>>>,
}

impl Manual {
    /// A source whose set starts as `initial`, and the handle that changes
    /// it.
    pub fn new(initial: impl IntoIterator<Item = Target>) -> (Manual, ManualHandle) {
        let (tx, rx) = watch::channel(initial.into_iter().collect::<Vec<_>>());
        let inner = stream::unfold((rx, true), |(mut rx, first)| async move {
            // The first item is the set as it is; after that, wait for a
            // newer one. `changed` reports a set made before the last
            // handle went, and fails only once none is left to see.
            if !first {
                rx.changed().await.ok()?;
            }
            let set = rx.borrow_and_update().clone();
            Some((Ok(set), (rx, false)))
        })
        .boxed();
        (Manual { inner }, ManualHandle { tx: Arc::new(tx) })
    }
}

impl ManualHandle {
    /// Makes `targets` the current set. A set equal to the current one
    /// changes nothing (the stream does not yield it again). Works whether
    /// or not the source is still in use.
    pub fn set(&self, targets: impl IntoIterator<Item = Target>) {
        let targets: Vec<Target> = targets.into_iter().collect();
        self.tx.send_if_modified(|current| {
            if *current == targets {
                return false;
            }
            *current = targets;
            true
        });
    }

    /// The current set.
    pub fn get(&self) -> Vec<Target> {
        self.tx.borrow().clone()
    }
}

impl Stream for Manual {
    type Item = Result<Vec<Target>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Manual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manual").finish_non_exhaustive()
    }
}

impl fmt::Debug for ManualHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualHandle")
            .field("targets", &*self.tx.borrow())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn port(p: u16) -> Target {
        Target::from(SocketAddr::from(([127, 0, 0, 1], p)))
    }

    async fn next(source: &mut Manual) -> Option<Vec<Target>> {
        tokio::time::timeout(Duration::from_secs(5), source.next())
            .await
            .expect("the source yielded nothing within 5 s")
            .map(|r| r.unwrap())
    }

    async fn nothing_yet(source: &mut Manual) {
        let more = tokio::time::timeout(Duration::from_millis(50), source.next()).await;
        assert!(more.is_err(), "yielded {more:?}");
    }

    #[tokio::test]
    async fn yields_the_initial_set_then_each_new_one() {
        let (mut source, handle) = Manual::new([port(1)]);
        assert_eq!(next(&mut source).await, Some(vec![port(1)]));
        nothing_yet(&mut source).await;

        // Set from another task, as a program would at run time.
        let h = handle.clone();
        tokio::spawn(async move { h.set([port(2), port(3)]) });
        assert_eq!(next(&mut source).await, Some(vec![port(2), port(3)]));
        assert_eq!(handle.get(), vec![port(2), port(3)]);
    }

    #[tokio::test]
    async fn the_latest_set_wins_and_an_unchanged_one_is_not_yielded() {
        let (mut source, handle) = Manual::new([port(1)]);
        assert_eq!(next(&mut source).await, Some(vec![port(1)]));
        handle.set([port(2)]);
        handle.set([port(3)]);
        assert_eq!(next(&mut source).await, Some(vec![port(3)]));
        handle.set([port(3)]);
        nothing_yet(&mut source).await;
    }

    #[tokio::test]
    async fn dropping_the_handles_yields_the_last_set_then_ends() {
        let (mut source, handle) = Manual::new([port(1)]);
        let other = handle.clone();
        assert_eq!(next(&mut source).await, Some(vec![port(1)]));
        handle.set([port(2)]);
        drop(handle);
        drop(other);
        assert_eq!(next(&mut source).await, Some(vec![port(2)]));
        assert_eq!(next(&mut source).await, None);
    }

    #[test]
    fn the_handle_is_send_sync_and_sets_without_a_source() {
        fn send_sync<T: Send + Sync + Clone>(_: &T) {}
        let (source, handle) = Manual::new([]);
        send_sync(&handle);
        drop(source);
        handle.set([port(9)]);
        assert_eq!(handle.get(), vec![port(9)]);
    }
}
