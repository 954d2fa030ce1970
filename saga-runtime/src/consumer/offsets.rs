//! Which offset of each partition is safe to commit: the lowest one fetched but not yet
//! finished (or one past the highest fetched, when nothing is running). Events of one partition
//! finish out of order, since different orders proceed independently, so the committable
//! offset only moves past an event once everything before it has finished too.
//!
//! Each assignment of a partition is tracked separately: when a partition is revoked (or the
//! consumer is replaced) its tracking is dropped, and an event fetched under the old assignment
//! that finishes later moves nothing, so it can never commit past events the new assignment has
//! not finished.

use std::collections::{BTreeSet, HashMap};

/// Identifies one assignment of one partition.
pub type Assignment = u64;

#[derive(Debug, Default)]
pub struct Offsets {
    partitions: HashMap<i32, Partition>,
    assignments: Assignment,
}

#[derive(Debug)]
struct Partition {
    assignment: Assignment,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset fetched.
    next: i64,
}

impl Offsets {
    /// Records that `offset` was fetched; returns the assignment it was fetched under.
    pub fn start(&mut self, partition: i32, offset: i64) -> Assignment {
        let assignments = &mut self.assignments;
        let tracked = self.partitions.entry(partition).or_insert_with(|| {
            *assignments += 1;
            Partition {
                assignment: *assignments,
                in_flight: BTreeSet::new(),
                next: offset,
            }
        });
        tracked.in_flight.insert(offset);
        tracked.next = tracked.next.max(offset + 1);
        tracked.assignment
    }

    /// Records that `offset` is finished; returns the partition's committable offset, or `None`
    /// if it was fetched under an assignment that has ended since.
    pub fn finish(&mut self, partition: i32, assignment: Assignment, offset: i64) -> Option<i64> {
        let tracked = self
            .partitions
            .get_mut(&partition)
            .filter(|tracked| tracked.assignment == assignment)?;
        tracked.in_flight.remove(&offset);
        Some(tracked.in_flight.first().copied().unwrap_or(tracked.next))
    }

    /// Forgets a partition that this consumer no longer owns.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Forgets every partition: the consumer is being replaced.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committable_offset_is_the_lowest_unfinished_one() {
        let mut offsets = Offsets::default();
        let assignment = offsets.start(0, 10);
        for offset in 11..14 {
            assert_eq!(offsets.start(0, offset), assignment);
        }
        assert_eq!(
            offsets.finish(0, assignment, 11),
            Some(10),
            "10 is still running"
        );
        assert_eq!(offsets.finish(0, assignment, 13), Some(10));
        assert_eq!(
            offsets.finish(0, assignment, 10),
            Some(12),
            "12 is still running"
        );
        assert_eq!(
            offsets.finish(0, assignment, 12),
            Some(14),
            "all fetched are done"
        );
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut offsets = Offsets::default();
        let zero = offsets.start(0, 5);
        let one = offsets.start(1, 100);
        assert_eq!(offsets.finish(1, one, 100), Some(101));
        assert_eq!(offsets.finish(0, zero, 5), Some(6));
    }

    #[test]
    fn an_event_of_a_revoked_assignment_moves_nothing_when_it_finishes() {
        let mut offsets = Offsets::default();
        let old = offsets.start(0, 40);
        offsets.revoke(0);
        // The partition comes back and is fetched again from its last commit.
        let new = offsets.start(0, 30);
        assert_ne!(old, new);
        assert_eq!(offsets.finish(0, old, 40), None);
        assert_eq!(offsets.finish(0, new, 30), Some(31));
        offsets.clear();
        assert_eq!(offsets.finish(0, new, 31), None, "a replaced consumer");
    }
}
