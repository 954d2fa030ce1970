//! A breadth-first explorer: visits every state a [`Model`] can reach, once each, and checks
//! its [`Property`]s in every one of them.
//!
//! Breadth first means states are checked in order of the number of steps that reach them, so
//! the first state that breaks a property ends the search with the shortest sequence of steps
//! that breaks it. A state is remembered by a 64-bit fingerprint of its hash, as TLC and
//! stateright do: the whole states would not fit in memory, and the chance that two of a few
//! million states share a fingerprint is below one in a million.

use std::{
    collections::{HashSet, VecDeque, hash_map::DefaultHasher},
    hash::{BuildHasher, BuildHasherDefault, Hash},
    time::{Duration, Instant},
};

/// A system as states and the steps between them.
pub trait Model {
    type State: Clone + Hash;
    type Action;

    fn initial_state(&self) -> Self::State;

    /// Every step that can happen next; none when the run has ended.
    fn actions(&self, state: &Self::State) -> Vec<Self::Action>;

    fn next_state(&self, state: &Self::State, action: &Self::Action) -> Self::State;

    /// One line saying what `action` does in `state`, for counterexamples.
    fn describe(&self, state: &Self::State, action: &Self::Action) -> String;

    fn properties(&self) -> Vec<Property<Self>>;
}

/// When a property must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// In every reachable state.
    Always,
    /// In every state where the run has ended (no action can happen).
    AtTheEnd,
    /// In at least one reachable state: a check that the model is not vacuous.
    Sometimes,
}

pub struct Property<M: Model + ?Sized> {
    pub expectation: Expectation,
    pub name: &'static str,
    pub holds: fn(&M, &M::State) -> bool,
}

impl<M: Model + ?Sized> Property<M> {
    pub fn always(name: &'static str, holds: fn(&M, &M::State) -> bool) -> Self {
        Property {
            expectation: Expectation::Always,
            name,
            holds,
        }
    }

    pub fn at_the_end(name: &'static str, holds: fn(&M, &M::State) -> bool) -> Self {
        Property {
            expectation: Expectation::AtTheEnd,
            name,
            holds,
        }
    }

    pub fn sometimes(name: &'static str, holds: fn(&M, &M::State) -> bool) -> Self {
        Property {
            expectation: Expectation::Sometimes,
            name,
            holds,
        }
    }
}

/// What an exploration found.
#[derive(Debug)]
pub struct Report {
    /// States reached, counting a state once per step that reaches it.
    pub states: usize,
    pub unique_states: usize,
    /// Unique states in which the run has ended.
    pub end_states: usize,
    /// The most steps any state needs.
    pub depth: usize,
    pub elapsed: Duration,
    pub verdict: Verdict,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every property holds.
    Holds,
    /// A property broke; these are the fewest steps that break it, one line each.
    Broken {
        property: &'static str,
        steps: Vec<String>,
    },
    /// No reachable state has these `sometimes` properties.
    Unreached(Vec<&'static str>),
}

/// Explores every state `model` can reach, and stops at the first that breaks a property.
pub fn explore<M: Model>(model: &M) -> Report {
    let started = Instant::now();
    let properties = model.properties();
    let mut unreached: Vec<&Property<M>> = properties
        .iter()
        .filter(|p| p.expectation == Expectation::Sometimes)
        .collect();
    let fingerprint =
        |state: &M::State| BuildHasherDefault::<DefaultHasher>::default().hash_one(state);

    // Every unique state is a node, numbered in the order found, with the step that found it:
    // enough to rebuild the path to any of them from the initial state.
    let initial = model.initial_state();
    let mut found_by: Vec<Option<(usize, M::Action)>> = vec![None];
    let mut seen = HashSet::from([fingerprint(&initial)]);
    let mut queue = VecDeque::from([(0, initial, 0)]);
    let (mut states, mut end_states, mut depth) = (1, 0, 0);
    let mut broken = None;

    while let Some((node, state, steps)) = queue.pop_front() {
        depth = depth.max(steps);
        let actions = model.actions(&state);
        let ended = actions.is_empty();
        end_states += usize::from(ended);
        let holds = |property: &Property<M>| (property.holds)(model, &state);
        let broke = properties.iter().find(|p| match p.expectation {
            Expectation::Always => !holds(p),
            Expectation::AtTheEnd => ended && !holds(p),
            Expectation::Sometimes => false,
        });
        if let Some(property) = broke {
            broken = Some(Verdict::Broken {
                property: property.name,
                steps: path_to(model, &found_by, node),
            });
            break;
        }
        unreached.retain(|p| !holds(p));
        for action in actions {
            let next = model.next_state(&state, &action);
            states += 1;
            if seen.insert(fingerprint(&next)) {
                found_by.push(Some((node, action)));
                queue.push_back((found_by.len() - 1, next, steps + 1));
            }
        }
    }
    let verdict = broken.unwrap_or_else(|| match unreached.as_slice() {
        [] => Verdict::Holds,
        unreached => Verdict::Unreached(unreached.iter().map(|p| p.name).collect()),
    });
    Report {
        states,
        unique_states: found_by.len(),
        end_states,
        depth,
        elapsed: started.elapsed(),
        verdict,
    }
}

/// The steps from the initial state to `node`, described one per line.
fn path_to<M: Model>(
    model: &M,
    found_by: &[Option<(usize, M::Action)>],
    mut node: usize,
) -> Vec<String> {
    let mut actions = Vec::new();
    while let Some((parent, action)) = &found_by[node] {
        actions.push(action);
        node = *parent;
    }
    let mut state = model.initial_state();
    let mut steps = Vec::new();
    for action in actions.into_iter().rev() {
        steps.push(model.describe(&state, action));
        state = model.next_state(&state, action);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two counters that each step raises by one, up to three, checked against `properties`.
    struct Counters {
        properties: fn() -> Vec<Property<Counters>>,
    }

    impl Model for Counters {
        type State = (u8, u8);
        type Action = usize;

        fn initial_state(&self) -> (u8, u8) {
            (0, 0)
        }

        fn actions(&self, &(a, b): &(u8, u8)) -> Vec<usize> {
            [a, b]
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n < 3)
                .map(|(counter, _)| counter)
                .collect()
        }

        fn next_state(&self, &(a, b): &(u8, u8), counter: &usize) -> (u8, u8) {
            if *counter == 0 {
                (a + 1, b)
            } else {
                (a, b + 1)
            }
        }

        fn describe(&self, _: &(u8, u8), counter: &usize) -> String {
            format!("raise {counter}")
        }

        fn properties(&self) -> Vec<Property<Self>> {
            (self.properties)()
        }
    }

    #[test]
    fn a_broken_property_comes_with_the_shortest_path_that_breaks_it() {
        let report = explore(&Counters {
            properties: || {
                vec![Property::always("the sum stays below four", |_, (a, b)| {
                    a + b < 4
                })]
            },
        });
        let steps = vec![
            "raise 0".to_string(),
            "raise 0".into(),
            "raise 0".into(),
            "raise 1".into(),
        ];
        assert_eq!(
            report.verdict,
            Verdict::Broken {
                property: "the sum stays below four",
                steps
            }
        );
    }

    #[test]
    fn every_state_is_visited_once_and_end_properties_are_checked_where_runs_end() {
        let report = explore(&Counters {
            properties: || {
                vec![
                    Property::at_the_end("both end at three", |_, state| *state == (3, 3)),
                    Property::sometimes("the first reaches three", |_, (a, _)| *a == 3),
                ]
            },
        });
        assert_eq!(report.verdict, Verdict::Holds);
        assert_eq!((report.unique_states, report.end_states), (16, 1));
        assert_eq!((report.states, report.depth), (25, 6));
    }

    #[test]
    fn an_example_no_run_reaches_is_reported() {
        let report = explore(&Counters {
            properties: || {
                vec![Property::sometimes(
                    "a counter passes three",
                    |_, &(a, b): &(u8, u8)| a.max(b) > 3,
                )]
            },
        });
        assert_eq!(
            report.verdict,
            Verdict::Unreached(vec!["a counter passes three"])
        );
    }
}
