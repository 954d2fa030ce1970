//! One queue per order: a saga's events are applied one at a time, in the order they were
//! fetched, while different sagas proceed independently (saga-rules §4 rule 9). An order is in the
//! map while one of its events is running; the queue holds the events waiting behind it.

use std::collections::{HashMap, VecDeque};

use common_events::OrderId;

#[derive(Debug)]
pub struct OrderQueues<J> {
    waiting: HashMap<OrderId, VecDeque<J>>,
}

impl<J> Default for OrderQueues<J> {
    fn default() -> Self {
        OrderQueues {
            waiting: HashMap::new(),
        }
    }
}

impl<J> OrderQueues<J> {
    /// Adds a fetched event of `order`: it is returned if it can run now (nothing of its order
    /// is running), otherwise it waits.
    pub fn push(&mut self, order: OrderId, job: J) -> Option<J> {
        match self.waiting.get_mut(&order) {
            Some(queue) => {
                queue.push_back(job);
                None
            }
            None => {
                self.waiting.insert(order, VecDeque::new());
                Some(job)
            }
        }
    }

    /// The running event of `order` is done (or dropped): returns its next event, which can run
    /// now, if one waits.
    pub fn next(&mut self, order: OrderId) -> Option<J> {
        let queue = self.waiting.get_mut(&order)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.waiting.remove(&order);
        }
        next
    }

    /// Drops the waiting events for which `keep` is false (their partition was revoked).
    pub fn retain(&mut self, keep: impl Fn(&J) -> bool) {
        for queue in self.waiting.values_mut() {
            queue.retain(&keep);
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

    #[test]
    fn an_orders_events_run_one_at_a_time_in_order() {
        let mut queues = OrderQueues::default();
        assert_eq!(queues.push(7, "created"), Some("created"));
        assert_eq!(queues.push(7, "rejected"), None, "waits behind created");
        assert_eq!(
            queues.push(8, "other"),
            Some("other"),
            "another saga runs at once"
        );
        assert_eq!(queues.next(7), Some("rejected"));
        assert_eq!(queues.next(7), None);
        assert_eq!(queues.running(), 1);
        assert_eq!(queues.push(7, "late"), Some("late"), "7 is idle again");
    }

    #[test]
    fn dropped_waiting_events_are_never_run() {
        let mut queues = OrderQueues::default();
        queues.push(1, (0, "a"));
        queues.push(1, (0, "b"));
        queues.push(1, (3, "c"));
        queues.retain(|(partition, _)| *partition != 0);
        assert_eq!(queues.next(1), Some((3, "c")));
        assert_eq!(queues.next(1), None);
        assert_eq!(queues.running(), 0);
    }
}
