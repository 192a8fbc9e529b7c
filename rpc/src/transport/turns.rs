//! How many frames a connection's read loop handles before its writer sends
//! what they produced (by yielding to a writer task, or by writing itself).
//!
//! A read loop that ends its turn part-way through a burst lets the replies
//! or requests made so far go out at once, so the peer starts on them while
//! we handle the rest. With one busy connection on a thread, that overlap is
//! what keeps both ends working: without it, a burst of pipelined calls
//! crosses as one block and each end waits while the other works.
//!
//! With several busy connections on a thread, the ends overlap anyway (the
//! peer works on one connection's burst while we handle another's), and each
//! early turn end only splits a write in two. That costs a system call on both
//! ends per split, and on loopback TCP the system calls are the larger part of
//! a small call's cost.
//!
//! So each read loop notes, as each of its turns begins, whether another read
//! loop of this library began one on the same thread since its own last
//! turn: a thread-local counter, no lock, no clock. A lone loop's turns are
//! short; a loop that shares its thread takes long ones.

use std::cell::Cell;

// The lengths while alone trade overlap against overhead: a shorter turn lets
// the peer start sooner on what this end has made so far, but every turn end
// costs a write (with a writer task, also a yield to it). The client's and the
// server's were tuned together, for one connection with many calls in flight;
// the figures are in the message of the commit that set them
// (`git log -S SERVER_ALONE_WRITING`).

/// Frames per turn of a client's read loop while it is the only busy one on
/// its thread.
pub(crate) const CLIENT_ALONE: u32 = 24;
/// The same for a server's read loop that writes its replies itself (on a
/// current-thread runtime): a short turn costs it a write, not a task switch.
pub(crate) const SERVER_ALONE_WRITING: u32 = 8;
/// The same for a server's read loop with a writer task, which must yield to
/// let the writer run.
pub(crate) const SERVER_ALONE: u32 = 16;
/// Frames per turn while other connections share the thread: long enough not
/// to split a burst. (What keeps one flooding peer from holding the thread is
/// the yield at a turn's end with a writer task, and tokio's coop budget,
/// which the server's driver spends per frame.)
const SHARED: u32 = 128;

thread_local! {
    /// Turns begun on this thread by every read loop, clients' and servers'.
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// One read loop's view of the thread it runs on.
#[derive(Debug)]
pub(crate) struct Turns {
    /// `TURNS` just after this loop's last turn began.
    last: u64,
    /// Frames per turn while alone.
    alone: u32,
}

impl Turns {
    /// A loop whose turns are `alone` frames long while no other loop is
    /// busy on its thread.
    pub(crate) fn new(alone: u32) -> Self {
        Turns { last: 0, alone }
    }

    /// Called as a turn begins; returns how many frames to handle before the
    /// writer sends.
    pub(crate) fn begin(&mut self) -> u32 {
        TURNS.with(|turns| {
            let seen = turns.get();
            let alone = seen == self.last;
            self.last = seen.wrapping_add(1);
            turns.set(self.last);
            if alone { self.alone } else { SHARED }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALONE: u32 = CLIENT_ALONE;

    #[test]
    fn a_lone_loop_yields_often_and_loops_sharing_a_thread_rarely() {
        let (mut a, mut b) = (Turns::new(ALONE), Turns::new(ALONE));
        // The first batch on a fresh thread is alone; so is every next one
        // while no other loop runs.
        assert_eq!(a.begin(), ALONE);
        assert_eq!(a.begin(), ALONE);
        // Another loop started a batch in between: both see company.
        assert_eq!(b.begin(), SHARED);
        assert_eq!(a.begin(), SHARED);
        assert_eq!(b.begin(), SHARED);
        // Alone again once the other stops.
        assert_eq!(b.begin(), ALONE);
        // A loop on another thread does not count.
        let mut c = Turns::new(ALONE);
        std::thread::spawn(move || {
            let mut d = Turns::new(ALONE);
            d.begin();
        })
        .join()
        .unwrap();
        assert_eq!(c.begin(), SHARED, "b ran since c was made");
        assert_eq!(c.begin(), ALONE);
    }
}
