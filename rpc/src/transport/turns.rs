//! How many frames a connection's read loop handles before it yields.
//!
//! A read loop that yields part-way through a burst lets the replies or
//! requests made so far go out at once, so the peer starts on them while we
//! handle the rest. With one busy connection on a thread, that overlap is
//! what keeps both ends working: without it, a burst of 64 pipelined calls
//! crosses as one block and each end waits while the other works (the
//! comparison bench's workload B runs at less than half the rate).
//!
//! With several busy connections on a thread, the ends overlap anyway (the
//! peer works on one connection's burst while we handle another's), and each
//! early yield only splits a write in two. That costs a system call on both
//! ends per split, and on loopback TCP the system calls are the larger part of
//! a small call's cost (workload C runs about 13% slower).
//!
//! So each read loop notes, as each of its turns begins, whether another read
//! loop of this library began one on the same thread since its own last
//! turn: a thread-local counter, no lock, no clock. A lone loop's turns are
//! short; a loop that shares its thread takes long ones.

use std::cell::Cell;

/// Frames per turn while this connection is the only busy one on its thread
/// (16 measured best against 8 and 32 on workload B).
const ALONE: u32 = 16;
/// Frames per turn while other connections share the thread: long enough not
/// to split a burst, short enough that one flooding peer cannot hold the
/// thread for long.
const SHARED: u32 = 128;

thread_local! {
    /// Turns begun on this thread by every read loop, clients' and servers'.
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// One read loop's view of the thread it runs on.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    /// `TURNS` just after this loop's last turn began.
    last: u64,
}

impl Turns {
    /// Called as a turn begins; returns how many frames to handle before
    /// yielding.
    pub(crate) fn begin(&mut self) -> u32 {
        TURNS.with(|turns| {
            let seen = turns.get();
            let alone = seen == self.last;
            self.last = seen.wrapping_add(1);
            turns.set(self.last);
            if alone { ALONE } else { SHARED }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_loop_yields_often_and_loops_sharing_a_thread_rarely() {
        let (mut a, mut b) = (Turns::default(), Turns::default());
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
        let mut c = Turns::default();
        std::thread::spawn(move || {
            let mut d = Turns::default();
            d.begin();
        })
        .join()
        .unwrap();
        assert_eq!(c.begin(), SHARED, "b ran since c was made");
        assert_eq!(c.begin(), ALONE);
    }
}
