//! A model checker for the saga: it runs the four services' real decision functions
//! (`order_service::domain::decide` and its three siblings, with `points_for` inside the
//! exchange's and `account_of` before the point's) and the events each service consumes
//! (`EventHandler::CONSUMES`) through every interleaving of one or two sagas, with crashes,
//! redeliveries, duplicate publications and the deadline passing at any point, and checks the
//! rules of saga-rules §4 in every state it reaches. A change to a decision is checked the next
//! time the tests run; `tests/every_interleaving.rs` holds the scenarios.
//!
//! # What is modelled
//! [`model::State`] holds, per saga: the order, exchange, ledger and deadline rows; each
//! service's inbox (event ids) and outbox (events written); the topic as the saga key's log
//! (one saga's events are ordered, different sagas interleave freely); each consumer's position
//! and each relay's progress. The holder's balance is shared by the holder's sagas. The steps
//! ([`model::Action`]):
//! - a service handles the next event it consumes, in one transaction: inbox claim, decision,
//!   the writes its shell makes of the decision, outbox (events a service does not consume are
//!   passed over, as its consumer does, without a step);
//! - the exchange's `OrderCreated` takes two steps, the decision and the INSERT that checks
//!   the deadline again, so the deadline can pass between them;
//! - a relay publishes its next outbox row;
//! - a consumer crashes and resumes at an earlier offset: every event after its last commit is
//!   delivered again, and an open transaction rolls back;
//! - a relay crashes after publishing and before marking rows published, and publishes them
//!   again, with the same event ids;
//! - a published event is published again under a new id (a replay by hand, a producer that
//!   bypassed the outbox): the inboxes cannot tell, so the decisions must;
//! - the saga's deadline passes (once, at any point), and the deadline timer fires a due
//!   pending deadline into its outbox.
//!
//! # What is abstracted away, and why
//! - **Time** is one flag per saga, "the deadline has passed": it is all the decisions ask.
//! - **Offset commits and outbox marks** are not steps of their own: they change nothing but
//!   where the next crash resumes, so a crash chooses any earlier offset (or row) to resume at.
//!   That also covers an operator replaying the topic from an earlier offset.
//! - **Batches**: a batch of events of different sagas commits as one transaction, which is the
//!   same as its events' steps one after another; a crash before the commit is one before all.
//! - **Two instances of a service** handling one saga meet in the inbox: the second claim of an
//!   event waits for the first transaction and then finds it, so this is a redelivery.
//! - **Order and point** read the clock once, under row locks held to their commit, and nothing
//!   another service can see changes before that commit: one step each. The deadline service's
//!   handler holds its row while the timer skips locked rows: one step too.
//! - **What no decision reads** is left out: event timestamps, HTTP, metrics, and unreadable
//!   events, which are set aside before any decision.
//!
//! # Bounds
//! One saga without faults has 240 states. Each fault kind multiplies them: a consumer crash by
//! 8, an event published again under a new id by 27, a relay crash by 48; a consumer crash and a
//! relay crash together make 103 thousand states, and all three at once 5 million (minutes, not
//! seconds). So each scenario of one saga (enough points, too few, no account) is explored
//! twice: with one consumer crash and one relay crash per run, of any service at any point (each
//! resumes at any earlier offset or row, so any suffix of a log is delivered or published
//! again), and with one event, any, published again under a new id. Two sagas of one holder
//! whose balance covers one of them: every interleaving, each deadline passing at any point,
//! and no faults, since sagas share only the balance, their faults are checked one saga at a
//! time, and one crash more takes two sagas from 100 thousand states to 1.5 million.
//!
//! # Properties
//! In every state: no balance is negative; each balance is its initial value less the points of
//! its sagas' USED ledger entries; an order's first terminal status never changes; a saga has
//! at most one event of each type and never both `OrderPlaced` and `OrderRejected`; nothing is
//! exchanged, taken or approved once the deadline has passed; the point service never finds its
//! ledger and accounts inconsistent. Where a run ends (nothing can happen any more): every
//! order is approved or rejected; an approved one has its exchange and its points taken; a
//! rejected one has its compensation done, its exchange compensated and its points back; no
//! deadline is left pending. And each scenario's expected outcomes are reached by some run, so
//! the check cannot pass vacuously. Every run ends: every step moves something forward, faults
//! are bounded, and a decision that emitted events without end would break "one event of each
//! type" first.
//!
//! The [explorer] is breadth first, so a broken property comes with the shortest sequence of
//! steps that breaks it. (stateright was the other choice, but its breadth-first checker keeps
//! the latest violation it meets rather than the first, so its paths need not be the shortest.)

pub mod explorer;
pub mod model;
mod properties;
