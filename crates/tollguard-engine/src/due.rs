//! The deadlines of limit states: a binary min-heap with one entry per state, which a state's
//! new deadline moves (or removes) in place.
//!
//! A heap that only grows (a new entry for each new deadline, old ones skipped when they come
//! up) holds every deadline set in the last hour: deadlines lie up to an hour ahead and move at
//! each answer and end of the account's calls, so at thousands of calls a second it grew by
//! tens of thousands of entries a second. Here the size is the number of states with a
//! deadline.

use jiff::Timestamp;

const ABSENT: u32 = u32::MAX;

/// Deadlines by state id, earliest first; ties by state id.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Deadlines {
    heap: Vec<(Timestamp, u32)>,
    /// Where each state's entry is in `heap` ([`ABSENT`]: none).
    pos: Vec<u32>,
}

impl Deadlines {
    /// Sets (or with `None` removes) the deadline of state `id`.
    pub(crate) fn set(&mut self, id: u32, at: Option<Timestamp>) {
        if self.pos.len() <= id as usize {
            self.pos.resize(id as usize + 1, ABSENT);
        }
        let p = self.pos[id as usize];
        match (p, at) {
            (ABSENT, None) => {}
            (ABSENT, Some(t)) => {
                self.heap.push((t, id));
                self.pos[id as usize] = (self.heap.len() - 1) as u32;
                self.up(self.heap.len() - 1);
            }
            (p, None) => self.remove_at(p as usize),
            (p, Some(t)) => {
                let old = self.heap[p as usize].0;
                self.heap[p as usize].0 = t;
                if t < old {
                    self.up(p as usize);
                } else {
                    self.down(p as usize);
                }
            }
        }
    }

    /// The earliest deadline and its state.
    pub(crate) fn peek(&self) -> Option<(Timestamp, u32)> {
        self.heap.first().copied()
    }

    /// Removes and returns the earliest deadline and its state.
    pub(crate) fn pop(&mut self) -> Option<(Timestamp, u32)> {
        let top = self.peek()?;
        self.remove_at(0);
        Some(top)
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, p: usize) {
        let last = self.heap.len() - 1;
        self.swap(p, last);
        let (_, id) = self.heap.pop().expect("not empty");
        self.pos[id as usize] = ABSENT;
        if p < self.heap.len() {
            self.up(p);
            self.down(p);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn up(&mut self, mut p: usize) {
        while p > 0 {
            let parent = (p - 1) / 2;
            if self.heap[p] >= self.heap[parent] {
                break;
            }
            self.swap(p, parent);
            p = parent;
        }
    }

    fn down(&mut self, mut p: usize) {
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut least = p;
            if l < self.heap.len() && self.heap[l] < self.heap[least] {
                least = l;
            }
            if r < self.heap.len() && self.heap[r] < self.heap[least] {
                least = r;
            }
            if least == p {
                break;
            }
            self.swap(p, least);
            p = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Against a sorted set of (deadline, id): the same earliest entry after every change,
        /// and the same order when emptied.
        #[test]
        fn behaves_as_a_sorted_set(ops in proptest::collection::vec((0u32..40, proptest::option::of(0i64..50)), 0..300)) {
            let mut d = Deadlines::default();
            let mut reference: BTreeSet<(Timestamp, u32)> = BTreeSet::new();
            let mut current: std::collections::HashMap<u32, Timestamp> = Default::default();
            for (id, at) in ops {
                let at = at.map(|s| Timestamp::from_second(s).unwrap());
                if let Some(old) = current.remove(&id) {
                    reference.remove(&(old, id));
                }
                if let Some(t) = at {
                    reference.insert((t, id));
                    current.insert(id, t);
                }
                d.set(id, at);
                prop_assert_eq!(d.peek(), reference.first().copied());
                prop_assert_eq!(d.len(), reference.len());
            }
            let mut drained = vec![];
            while let Some(e) = d.pop() {
                drained.push(e);
            }
            prop_assert_eq!(drained, reference.into_iter().collect::<Vec<_>>());
        }
    }
}
