//! The calls in flight on one connection, by call id, in a slab: the id of a
//! call names its slot, so finding a call is an index, not a hash lookup.
//!
//! An id is the slot's index + 1 in its low 32 bits (so no id is 0) and the
//! number of earlier uses of that slot in its high 32 (wrapping). A slot
//! freed by a call that gave up is taken again by a later call under a new
//! id, so a late Response or a stray id from the server finds nothing (the
//! ids differ), and ids stay unique among the calls in flight, as the
//! protocol requires. An id comes back only after its slot has been used
//! 2^32 times (at a million calls a second on one slot, after 70 minutes):
//! ids are not unique over a long-lived connection's whole life, so logs
//! that correlate calls by id should add the time. Freed slots are reused
//! last-freed first, which keeps the few in use warm.
//!
//! The slab keeps the size of its busiest moment (about 80 bytes a slot),
//! as the hash map it replaced kept its capacity; scans (the deadline timer,
//! the keepalive check) walk it whole, once per timer period.

/// A map from call id to `V`, choosing the ids itself.
#[derive(Debug)]
pub(super) struct Slots<V> {
    slots: Vec<Slot<V>>,
    /// The most recently freed slot, heading the list of free ones.
    free: Option<u32>,
}

#[derive(Debug)]
enum Slot<V> {
    Used { id: u64, value: V },
    Free { uses: u32, next: Option<u32> },
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: None,
        }
    }
}

fn id_of(index: u32, uses: u32) -> u64 {
    (u64::from(uses) << 32) | u64::from(index + 1)
}

/// The slot index an id names, if it can name one.
fn index_of(id: u64) -> Option<usize> {
    (id as u32).checked_sub(1).map(|i| i as usize)
}

impl<V> Slots<V> {
    /// Stores `value` under a new id, which it returns.
    #[inline]
    pub(super) fn insert(&mut self, value: V) -> u64 {
        if let Some(index) = self.free {
            let slot = &mut self.slots[index as usize];
            let Slot::Free { uses, next } = *slot else {
                unreachable!("the free list holds free slots only")
            };
            self.free = next;
            let id = id_of(index, uses);
            *slot = Slot::Used { id, value };
            return id;
        }
        // No free slot: a new one. More than 2^32 - 1 calls in flight at
        // once cannot happen (the in-flight cap is a usize setting, but each
        // call holds memory and a task), so the index fits.
        let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 calls in flight");
        let id = id_of(index, 0);
        self.slots.push(Slot::Used { id, value });
        id
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.slots.get_mut(index_of(id)?)? {
            Slot::Used { id: used, value } if *used == id => Some(value),
            _ => None,
        }
    }

    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> Option<V> {
        let index = index_of(id)?;
        let slot = self.slots.get_mut(index)?;
        if !matches!(slot, Slot::Used { id: used, .. } if *used == id) {
            return None;
        }
        let freed = Slot::Free {
            uses: ((id >> 32) as u32).wrapping_add(1),
            next: self.free,
        };
        let Slot::Used { value, .. } = std::mem::replace(slot, freed) else {
            unreachable!("just matched")
        };
        self.free = Some(index as u32);
        Some(value)
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Used { id, value } => Some((*id, value)),
            Slot::Free { .. } => None,
        })
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> {
        self.slots.iter_mut().filter_map(|slot| match slot {
            Slot::Used { id, value } => Some((*id, value)),
            Slot::Free { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Against a HashMap as the model: any sequence of inserts and removes
    /// (of live ids, stale ids and made-up ones) gives the same answers, and
    /// no id is handed out twice (in 20,000 steps; an id comes back only
    /// after 2^32 uses of its slot).
    #[test]
    fn behaves_as_a_map_that_does_not_reuse_ids() {
        let mut slots = Slots::default();
        let mut model = HashMap::new();
        let mut issued = std::collections::HashSet::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut gone = Vec::new();
        for step in 0..20_000u64 {
            match next() % 4 {
                0 | 1 => {
                    let id = slots.insert(step);
                    assert_ne!(id, 0);
                    assert!(issued.insert(id), "id {id:#x} issued twice");
                    model.insert(id, step);
                }
                2 => {
                    let id = model.keys().next().copied();
                    if let Some(id) = id {
                        assert_eq!(slots.remove(id), model.remove(&id));
                        gone.push(id);
                    }
                }
                _ => {
                    // Stale, made-up and zero ids find nothing.
                    let stale = gone.get(next() as usize % gone.len().max(1)).copied();
                    for id in stale.into_iter().chain([0, next(), next() & 0xFFFF]) {
                        if !model.contains_key(&id) {
                            assert_eq!(slots.get_mut(id), None);
                            assert_eq!(slots.remove(id), None);
                        }
                    }
                }
            }
            assert_eq!(slots.is_empty(), model.is_empty());
        }
        let mut left: Vec<_> = slots.iter().map(|(id, &v)| (id, v)).collect();
        let mut expected: Vec<_> = model.into_iter().collect();
        left.sort_unstable();
        expected.sort_unstable();
        assert_eq!(left, expected);
    }

    #[test]
    fn the_first_ids_of_a_connection_are_1_2_3_and_a_freed_slot_is_reused_under_a_new_id() {
        let mut slots = Slots::default();
        assert_eq!(
            [slots.insert('a'), slots.insert('b'), slots.insert('c')],
            [1, 2, 3]
        );
        assert_eq!(slots.remove(2), Some('b'));
        let again = slots.insert('d');
        assert_eq!(again, (1 << 32) | 2);
        assert_eq!(slots.get_mut(2), None);
        assert_eq!(slots.get_mut(again), Some(&mut 'd'));
    }
}
