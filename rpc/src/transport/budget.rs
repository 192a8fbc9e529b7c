//! The server-wide budget for frames still arriving.
//!
//! A frame's header says how long it is before its body arrives, so a peer
//! can make a reader buffer up to the frame limit and then stall. Alone that
//! costs one frame; across many connections it is connections x frame limit.
//! So a reader buffers at most [`FREE_BYTES`] on its own; a frame longer than
//! that is read only once the server's budget grants its whole length, and
//! while it waits nothing more is read from that peer (its writes wait, as
//! for any backpressure). The grant is held until the frame's request starts
//! a handler (or is refused), so requests held back at a full connection
//! count too. Past a granted frame a reader buffers up to [`FREE_BYTES`] of
//! what follows, as for small frames. What the server holds for frames is
//! then at most the budget plus [`FREE_BYTES`] per connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// What one connection's reader may buffer without asking the budget: room
/// for many small requests at once, so the common call never touches the
/// shared budget.
pub(crate) const FREE_BYTES: usize = 64 * 1024;

/// The budget counts in units of this many bytes, so a frame of up to 4 GiB
/// is one `u32` of permits.
const UNIT: usize = 1024;

/// Bytes of frames still arriving (or waiting for a handler), all of a
/// server's connections together.
#[derive(Debug, Clone)]
pub(crate) struct FrameBudget(Arc<Semaphore>);

impl FrameBudget {
    /// A budget of `bytes`, raised to fit one frame of `max_frame` bytes
    /// (a smaller one could never grant it).
    pub(crate) fn new(bytes: usize, max_frame: usize) -> Self {
        let bytes = bytes.max(max_frame + crate::protocol::LEN_PREFIX);
        FrameBudget(Arc::new(Semaphore::new(
            units(bytes).min(Semaphore::MAX_PERMITS),
        )))
    }

    /// A grant of `bytes` if the budget has room for them now.
    pub(crate) fn try_grant(&self, bytes: usize) -> Option<Grant> {
        let permits = u32::try_from(units(bytes)).ok()?;
        self.0.clone().try_acquire_many_owned(permits).ok()
    }

    /// Bytes not granted to any frame now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.0.available_permits() * UNIT
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

/// Bytes granted from a [`FrameBudget`], given back when dropped.
pub(crate) type Grant = OwnedSemaphorePermit;

type Acquiring = Pin<Box<dyn Future<Output = Result<Grant, AcquireError>> + Send>>;

/// One reader's share of the budget: the grant for the frame it is reading,
/// and the grant of the frame it handed out last (the driver takes it, to
/// hold it until the request starts).
pub(crate) struct ReadBudget {
    budget: FrameBudget,
    /// The frame being read and the bytes granted to it.
    granted: Option<(usize, Grant)>,
    /// Waiting for this many bytes.
    acquiring: Option<(usize, Acquiring)>,
    /// The grant of the last frame handed out, until the driver takes it.
    handed_out: Option<Grant>,
}

impl std::fmt::Debug for ReadBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBudget")
            .field("granted", &self.granted.as_ref().map(|(n, _)| n))
            .field("waiting", &self.acquiring.as_ref().map(|(n, _)| n))
            .finish()
    }
}

impl ReadBudget {
    pub(crate) fn new(budget: FrameBudget) -> Self {
        ReadBudget {
            budget,
            granted: None,
            acquiring: None,
            handed_out: None,
        }
    }

    /// How many more bytes the reader may buffer, given that `buffered`
    /// bytes hold the start of a frame of `frame` bytes in all (if its length
    /// prefix has arrived). Pending while the budget has no room for it.
    #[inline]
    pub(crate) fn poll_room(
        &mut self,
        cx: &mut Context<'_>,
        buffered: usize,
        frame: Option<usize>,
    ) -> Poll<usize> {
        let need = match frame {
            Some(len) if len > FREE_BYTES => len,
            _ => return Poll::Ready(FREE_BYTES.saturating_sub(buffered)),
        };
        if !matches!(self.granted, Some((n, _)) if n >= need) {
            let grant = std::task::ready!(self.poll_acquire(cx, need));
            self.granted = Some((need, grant));
        }
        // The granted frame, and what may follow it as for any frame: reads
        // of pipelined large frames are not cut at each frame's end.
        Poll::Ready((need + FREE_BYTES).saturating_sub(buffered))
    }

    fn poll_acquire(&mut self, cx: &mut Context<'_>, bytes: usize) -> Poll<Grant> {
        let permits = u32::try_from(units(bytes)).unwrap_or(u32::MAX);
        if !matches!(self.acquiring, Some((n, _)) if n == bytes) {
            // The common case: room now, without boxing a future.
            if let Ok(grant) = self.budget.0.clone().try_acquire_many_owned(permits) {
                return Poll::Ready(grant);
            }
            let waiting = self.budget.0.clone().acquire_many_owned(permits);
            self.acquiring = Some((bytes, Box::pin(waiting)));
        }
        let (_, waiting) = self.acquiring.as_mut().expect("set above");
        let result = std::task::ready!(waiting.as_mut().poll(cx));
        self.acquiring = None;
        Poll::Ready(result.expect("the budget's semaphore is never closed"))
    }

    /// Waiting for the budget to grant the frame being read.
    #[inline]
    pub(crate) fn waiting(&self) -> bool {
        self.acquiring.is_some()
    }

    /// The frame being read was handed out: its grant goes with it.
    #[inline]
    pub(crate) fn frame_taken(&mut self) {
        if let Some((_, grant)) = self.granted.take() {
            self.handed_out = Some(grant);
        }
    }

    /// The grant of the frame handed out last, if it needed one.
    #[inline]
    pub(crate) fn take_grant(&mut self) -> Option<Grant> {
        self.handed_out.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    fn poll(budget: &mut ReadBudget, buffered: usize, frame: Option<usize>) -> Poll<usize> {
        budget.poll_room(&mut Context::from_waker(noop_waker_ref()), buffered, frame)
    }

    #[test]
    fn small_frames_never_touch_the_budget() {
        let shared = FrameBudget::new(0, 4096);
        let before = shared.available();
        let mut reader = ReadBudget::new(shared.clone());
        assert_eq!(poll(&mut reader, 0, None), Poll::Ready(FREE_BYTES));
        assert_eq!(
            poll(&mut reader, 100, Some(500)),
            Poll::Ready(FREE_BYTES - 100)
        );
        assert_eq!(shared.available(), before);
    }

    #[test]
    fn a_large_frame_waits_for_room_and_its_grant_goes_with_it() {
        let shared = FrameBudget::new(300 * 1024, 200 * 1024);
        let mut first = ReadBudget::new(shared.clone());
        let mut second = ReadBudget::new(shared.clone());
        let frame = 200 * 1024;
        assert_eq!(
            poll(&mut first, 10, Some(frame)),
            Poll::Ready(frame + FREE_BYTES - 10)
        );
        assert_eq!(poll(&mut second, 10, Some(frame)), Poll::Pending);
        assert!(second.waiting());
        // Handed out, the frame keeps its bytes until the driver lets go.
        first.frame_taken();
        assert_eq!(poll(&mut second, 10, Some(frame)), Poll::Pending);
        drop(first.take_grant());
        assert_eq!(
            poll(&mut second, 10, Some(frame)),
            Poll::Ready(frame + FREE_BYTES - 10)
        );
        assert!(!second.waiting());
        drop(second);
        assert_eq!(shared.available(), 300 * 1024);
    }

    #[test]
    fn the_budget_always_fits_one_largest_frame() {
        let shared = FrameBudget::new(0, 1 << 20);
        let mut reader = ReadBudget::new(shared);
        let whole = (1 << 20) + crate::protocol::LEN_PREFIX;
        assert_eq!(
            poll(&mut reader, 0, Some(whole)),
            Poll::Ready(whole + FREE_BYTES)
        );
    }
}
