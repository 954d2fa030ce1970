//! Per-order scheduling: a saga's events are applied one at a time, in the order they were
//! fetched, while different sagas proceed independently (saga-rules §4 rule 9).
//!
//! An order is *running* from the moment one of its events may start until that event is
//! finished; the events fetched meanwhile wait behind it in the order's queue. An event that
//! may start either runs alone or joins the line of events waiting for the next batch, so a
//! batch never holds two events of one order. Nothing here touches Kafka or the database.

use std::collections::{HashMap, VecDeque};

use common_events::OrderId;

/// What the schedule needs to know of an event.
pub trait Scheduled {
    fn order_id(&self) -> OrderId;
    /// The Kafka partition it was fetched from, for dropping a revoked partition's events.
    fn partition(&self) -> i32;
}

#[derive(Debug)]
pub struct OrderQueues<J> {
    /// Every running order, with the events waiting behind its running one.
    waiting: HashMap<OrderId, VecDeque<J>>,
    /// Events that may start, in line for the next batch; each of a different order.
    ready: VecDeque<J>,
}

impl<J> Default for OrderQueues<J> {
    fn default() -> Self {
        OrderQueues {
            waiting: HashMap::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<J: Scheduled> OrderQueues<J> {
    /// Adds a fetched event: it is returned if it may start now (nothing of its order is
    /// running), otherwise it waits behind its order's running event.
    pub fn push(&mut self, job: J) -> Option<J> {
        match self.waiting.get_mut(&job.order_id()) {
            Some(queue) => {
                queue.push_back(job);
                None
            }
            None => {
                self.waiting.insert(job.order_id(), VecDeque::new());
                Some(job)
            }
        }
    }

    /// Puts an event that may start (one [`push`](Self::push) or [`finish`](Self::finish)
    /// returned) in line for the next batch.
    pub fn ready(&mut self, job: J) {
        self.ready.push_back(job);
    }

    /// Takes up to `max` events in line, oldest first, for one batch.
    pub fn batch(&mut self, max: usize) -> Vec<J> {
        let size = self.ready.len().min(max);
        self.ready.drain(..size).collect()
    }

    /// The running event of `order` is finished: returns its next event, which may start now,
    /// if one waits.
    pub fn finish(&mut self, order: OrderId) -> Option<J> {
        let queue = self.waiting.get_mut(&order)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.waiting.remove(&order);
        }
        next
    }

    /// Drops the events that have not started (waiting, or in line for a batch) of the
    /// partitions for which `keep` is false. An order whose event in line is dropped is no
    /// longer running: its events are all of one partition, so none of them is left.
    pub fn drop_waiting(&mut self, keep: impl Fn(i32) -> bool) {
        for queue in self.waiting.values_mut() {
            queue.retain(|job| keep(job.partition()));
        }
        let (kept, dropped): (VecDeque<J>, VecDeque<J>) =
            self.ready.drain(..).partition(|job| keep(job.partition()));
        self.ready = kept;
        for job in dropped {
            self.waiting.remove(&job.order_id());
        }
    }

    /// Orders with an event running.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of `order`, fetched from `partition`, named for the assertions.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Job(OrderId, i32, &'static str);

    impl Scheduled for Job {
        fn order_id(&self) -> OrderId {
            self.0
        }
        fn partition(&self) -> i32 {
            self.1
        }
    }

    #[test]
    fn an_orders_events_start_one_at_a_time_in_fetch_order_while_other_orders_start_at_once() {
        let mut queues = OrderQueues::default();
        let created = Job(7, 0, "created");
        assert_eq!(queues.push(created), Some(created));
        assert_eq!(
            queues.push(Job(7, 0, "rejected")),
            None,
            "waits behind created"
        );
        assert_eq!(queues.push(Job(7, 0, "reached")), None);
        let other = Job(8, 1, "other");
        assert_eq!(
            queues.push(other),
            Some(other),
            "another saga starts at once"
        );
        assert_eq!(queues.finish(7), Some(Job(7, 0, "rejected")));
        assert_eq!(queues.finish(7), Some(Job(7, 0, "reached")));
        assert_eq!(queues.finish(7), None);
        assert_eq!(queues.running(), 1, "only 8 is still running");
        let late = Job(7, 0, "late");
        assert_eq!(queues.push(late), Some(late), "7 is idle again");
    }

    #[test]
    fn a_batch_takes_at_most_its_size_from_the_line_oldest_first() {
        let mut queues = OrderQueues::default();
        for order in 1..=5 {
            let job = queues.push(Job(order, 0, "created")).unwrap();
            queues.ready(job);
        }
        let first: Vec<OrderId> = queues.batch(3).iter().map(|job| job.0).collect();
        assert_eq!(first, [1, 2, 3]);
        let rest: Vec<OrderId> = queues.batch(3).iter().map(|job| job.0).collect();
        assert_eq!(rest, [4, 5]);
        assert!(queues.batch(3).is_empty());
    }

    #[test]
    fn events_of_a_revoked_partition_that_have_not_started_are_dropped_and_free_their_orders() {
        let mut queues = OrderQueues::default();
        // Order 1 (partition 0) is running with two events waiting; order 2 (partition 0) is
        // in line for a batch with one waiting; order 3 (partition 3) is in line too.
        queues.push(Job(1, 0, "running"));
        queues.push(Job(1, 0, "a"));
        queues.push(Job(1, 0, "b"));
        let two = queues.push(Job(2, 0, "in line")).unwrap();
        queues.ready(two);
        queues.push(Job(2, 0, "behind"));
        let three = queues.push(Job(3, 3, "in line")).unwrap();
        queues.ready(three);

        queues.drop_waiting(|partition| partition != 0);

        assert_eq!(
            queues.batch(10),
            [three],
            "only partition 3's event is left in line"
        );
        assert_eq!(queues.finish(1), None, "order 1's waiting events are gone");
        let again = Job(2, 0, "fetched again");
        assert_eq!(queues.push(again), Some(again), "order 2 no longer runs");
        assert_eq!(queues.finish(3), None);
    }
}
