//! The in-flight cap: at most `max` calls on a connection at once; callers
//! beyond it wait in line, first come, first served. Kept under the
//! connection's state lock, which a call takes anyway to record itself.

use std::collections::VecDeque;
use std::task::Waker;

#[derive(Debug)]
pub(super) struct Admission {
    /// Slots taken: one per call recorded, and one per caller granted a slot
    /// that has not queued its request yet.
    in_flight: usize,
    max: usize,
    /// Callers waiting for a slot, by ticket.
    line: VecDeque<(u64, Waker)>,
    next_ticket: u64,
}

impl Admission {
    pub(super) fn new(max: usize) -> Self {
        Admission {
            in_flight: 0,
            max,
            line: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Takes a slot if one is free and nobody is in line ahead.
    #[inline]
    pub(super) fn try_take(&mut self) -> bool {
        if self.in_flight >= self.max || !self.line.is_empty() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// Gives a slot back; returns the waker of whoever is first in line, to
    /// wake once the lock is released.
    #[inline]
    pub(super) fn release(&mut self) -> Option<Waker> {
        self.in_flight -= 1;
        self.next_in_line()
    }

    /// The caller first in line, if a slot is free for it.
    #[inline]
    fn next_in_line(&self) -> Option<Waker> {
        if self.in_flight < self.max {
            self.line.front().map(|(_, waker)| waker.clone())
        } else {
            None
        }
    }

    /// Joins the line; returns the caller's ticket.
    pub(super) fn join(&mut self, waker: Waker) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.line.push_back((ticket, waker));
        ticket
    }

    /// `Some` once `ticket` is first in line and a slot is free: the slot is
    /// taken for it (and the next in line's waker returned, if a slot is left
    /// for them too). Otherwise keeps `waker` to be woken.
    pub(super) fn poll_turn(&mut self, ticket: u64, waker: &Waker) -> Option<Option<Waker>> {
        let first = self.line.front().is_some_and(|&(t, _)| t == ticket);
        if first && self.in_flight < self.max {
            self.line.pop_front();
            self.in_flight += 1;
            return Some(self.next_in_line());
        }
        if let Some((_, kept)) = self.line.iter_mut().find(|(t, _)| *t == ticket)
            && !kept.will_wake(waker)
        {
            kept.clone_from(waker);
        }
        None
    }

    /// Leaves the line (given a slot or not); returns the waker of the next
    /// in line if it may now go.
    pub(super) fn leave(&mut self, ticket: u64) -> Option<Waker> {
        if let Some(i) = self.line.iter().position(|&(t, _)| t == ticket) {
            self.line.remove(i);
        }
        self.next_in_line()
    }

    /// Everyone in line, to wake when the connection stops taking calls:
    /// each sees that and goes elsewhere.
    pub(super) fn everyone_in_line(&self) -> Vec<Waker> {
        self.line.iter().map(|(_, waker)| waker.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots go first come, first served: a caller that arrives while others
    /// wait does not jump the line, and each release lets the next one in.
    #[test]
    fn first_come_first_served_under_the_cap() {
        let waker = futures::task::noop_waker();
        let mut a = Admission::new(2);
        assert!(a.try_take() && a.try_take());
        assert!(!a.try_take(), "at the cap");
        let first = a.join(waker.clone());
        let second = a.join(waker.clone());
        assert!(a.poll_turn(second, &waker).is_none());
        assert!(a.release().is_some(), "the first in line is woken");
        assert!(!a.try_take(), "a newcomer does not jump the line");
        assert!(a.poll_turn(second, &waker).is_none(), "not its turn yet");
        assert!(matches!(a.poll_turn(first, &waker), Some(None)));
        assert!(a.leave(first).is_none());
        assert!(a.release().is_some());
        assert!(a.poll_turn(second, &waker).is_some());
        a.leave(second);
        assert!(a.everyone_in_line().is_empty());
    }
}
