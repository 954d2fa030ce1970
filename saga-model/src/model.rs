//! The saga as states and steps: what the four databases, the topic and the consumers and
//! relays hold, and every step that can change it. A service's step calls its real decision
//! function and then writes what the decision says, as its shell (`handlers.rs`) does.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use chrono::{DateTime, Utc};
use common_events::{Event, EventType};
use deadline_service::domain as deadline;
use exchange_service::domain as exchange;
use order_service::domain as order;
use point_service::domain as point;
use rust_decimal::Decimal;
use saga_runtime::EventHandler;

use crate::explorer::{Model, Property};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Order,
    Exchange,
    Point,
    Deadline,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Order,
        Service::Exchange,
        Service::Point,
        Service::Deadline,
    ];

    /// The events the service's consumer hands to its handler, as the service declares them;
    /// it passes over every other event without touching its database.
    fn consumes(self) -> &'static [EventType] {
        match self {
            Service::Order => order_service::OrderService::CONSUMES,
            Service::Exchange => exchange_service::ExchangeService::CONSUMES,
            Service::Point => point_service::PointService::CONSUMES,
            Service::Deadline => deadline_service::DeadlineService::CONSUMES,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Order => "order",
            Service::Exchange => "exchange",
            Service::Point => "point",
            Service::Deadline => "deadline",
        })
    }
}

/// An event's `eventId`: the outbox row it was written as, and for a copy published under a
/// new id, which copy it is (0 for the row itself). The relay publishes a row again with the
/// same id, which is what the inboxes key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    pub from: Service,
    pub row: usize,
    pub copy: usize,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.from, self.row)?;
        match self.copy {
            0 => Ok(()),
            copy => write!(f, " copy {copy}"),
        }
    }
}

/// Everything the system holds, for every saga.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub sagas: Vec<Saga>,
    /// The point service's accounts: balance by holder, shared by the holder's sagas.
    pub accounts: BTreeMap<String, Decimal>,
    /// Faults the run may still have.
    pub faults_left: Faults,
}

/// One saga: its rows in the four databases, its key's part of the topic, and where each
/// service's consumer and relay are in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Saga {
    /// The clock has passed the saga's deadline: all the decisions ask of time.
    pub expired: bool,
    /// Every publication of the saga's key, in order; a row published twice is here twice.
    pub topic: Vec<EventId>,
    pub order: order::Order,
    pub exchange: Option<exchange::Exchange>,
    pub ledger: Option<point::Entry>,
    pub deadline: Option<deadline::Status>,
    /// The exchange's transaction for `OrderCreated`, open between its decision and the INSERT
    /// that re-checks the deadline: the event's offset, and what the decision would write.
    pub exchange_open: Option<(usize, exchange::NewExchange, Event)>,
    /// Each service's part of the saga, in [`Service::ALL`] order.
    pub services: [Participant; 4],
    /// History for the properties: the order's first terminal status,
    pub first_terminal: Option<order::Status>,
    /// the first service that made a forward change once the deadline had passed,
    pub late_forward_change: Option<Service>,
    /// and what the point service found inconsistent, if it did.
    pub inconsistency: Option<&'static str>,
}

/// One service's part of one saga.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    /// The ids of the events it has applied or ignored (its database).
    pub inbox: BTreeSet<EventId>,
    /// The events it has written (its database).
    pub outbox: Vec<Event>,
    /// The consumer's next offset.
    pub position: usize,
    /// Outbox rows the relay has published.
    pub sent: usize,
}

impl Saga {
    fn at(&self, service: Service) -> &Participant {
        &self.services[service as usize]
    }

    fn at_mut(&mut self, service: Service) -> &mut Participant {
        &mut self.services[service as usize]
    }

    fn event(&self, id: EventId) -> &Event {
        &self.at(id.from).outbox[id.row]
    }

    /// Every event the saga's services have written.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.services.iter().flat_map(|p| &p.outbox)
    }

    /// The offsets in `range` of the events `service` consumes.
    fn consumed(
        &self,
        service: Service,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = usize> {
        range.filter(move |offset| {
            let event = self.event(self.topic[*offset]);
            service.consumes().contains(&event.event_type())
        })
    }

    /// The offset and id of the next event `service` consumes, if one has been published.
    fn next_for(&self, service: Service) -> Option<(usize, EventId)> {
        let from = self.at(service).position;
        let offset = self.consumed(service, from..self.topic.len()).next()?;
        Some((offset, self.topic[offset]))
    }
}

/// A step of the system. Each names its saga by its index in [`State::sagas`]; a crash also
/// names the offset (or outbox row) it resumes at, and a copy the row it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The service's consumer takes the next event it consumes and applies it in one
    /// transaction: inbox claim, decision, writes, outbox.
    Handle(Service, usize),
    /// The exchange's guarded INSERT, which ends the transaction `Handle` opened for
    /// `OrderCreated`.
    InsertExchange(usize),
    /// The consumer crashes and resumes at an earlier offset, the last it had committed, so
    /// every event from there on is delivered again; an open transaction rolls back.
    Crash(Service, usize, usize),
    /// The relay publishes the next outbox row.
    Publish(Service, usize),
    /// The relay crashes after publishing rows but before marking them published, and
    /// publishes again from this row on.
    RelayCrash(Service, usize, usize),
    /// A published row is published again under a new event id (replayed by hand, or sent by a
    /// producer that bypassed the outbox): only the decisions can tell it is not new.
    PublishCopy(Service, usize, usize),
    /// The clock passes the saga's deadline.
    DeadlinePasses(usize),
    /// The deadline timer fires a pending deadline that is due.
    TimerFires(usize),
}

impl Action {
    fn saga(self) -> usize {
        match self {
            Action::Handle(_, s)
            | Action::InsertExchange(s)
            | Action::Crash(_, s, _)
            | Action::Publish(_, s)
            | Action::RelayCrash(_, s, _)
            | Action::PublishCopy(_, s, _)
            | Action::DeadlinePasses(s)
            | Action::TimerFires(s) => s,
        }
    }
}

/// What a service's decision function made of the next event it consumes.
enum Decided {
    /// Its id is in the inbox: the transaction changes nothing.
    Duplicate,
    Order(order::Decision),
    Exchange(exchange::Decision),
    Point(point::Decision),
    Deadline(deadline::Decision),
}

/// Every saga's deadline. The model's clock is [`Saga::expired`]: it shows this time once the
/// deadline has passed (see [`now`]).
const DEADLINE: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// How many of each fault a run may have, anywhere and at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Faults {
    /// Consumer crashes, of any service.
    pub crashes: u8,
    /// Relay crashes between publishing rows and marking them published, of any service.
    pub relay_crashes: u8,
    /// Events published again under a new id.
    pub copies: u8,
}

/// The sagas of one holder, the faults allowed, and the outcomes some run must reach.
pub struct Scenario {
    pub holder: &'static str,
    /// The holder's balance; `None`: the holder has no point account.
    pub balance: Option<Decimal>,
    /// One saga per amount ordered.
    pub amounts: Vec<Decimal>,
    pub faults: Faults,
    /// Order outcomes that must be reachable, so the check cannot pass vacuously.
    pub reachable: Vec<order::Status>,
}

impl Scenario {
    /// The event `service` consumes next in saga `s`, and what its decision makes of it.
    fn next_decision(
        &self,
        state: &State,
        service: Service,
        s: usize,
    ) -> Option<(usize, EventId, Decided)> {
        let saga = &state.sagas[s];
        let (offset, id) = saga.next_for(service)?;
        if saga.at(service).inbox.contains(&id) {
            return Some((offset, id, Decided::Duplicate));
        }
        let event = saga.event(id);
        let decided = match service {
            Service::Order => Decided::Order(order::decide(Some(&saga.order), event, saga.expired)),
            Service::Exchange => {
                Decided::Exchange(exchange::decide(saga.exchange, event, saga.expired))
            }
            Service::Point => {
                let account = point::account_of(saga.ledger.as_ref(), event).and_then(|user_id| {
                    Some(point::Account {
                        user_id: user_id.to_string(),
                        balance: *state.accounts.get(user_id)?,
                    })
                });
                Decided::Point(point::decide(
                    saga.ledger.as_ref(),
                    account.as_ref(),
                    event,
                    saga.expired,
                ))
            }
            Service::Deadline => {
                Decided::Deadline(deadline::decide(saga.deadline, event, DEADLINE))
            }
        };
        Some((offset, id, decided))
    }

    /// Applies `service`'s next event of saga `s` as its handler does.
    fn handle(&self, state: &mut State, service: Service, s: usize) {
        let Some((offset, id, decided)) = self.next_decision(state, service, s) else {
            return;
        };
        let saga = &mut state.sagas[s];
        let expired = saga.expired;
        match decided {
            Decided::Duplicate => {}
            Decided::Order(order::Decision::Change { order, emit }) => {
                let approves = order.status == order::Status::Approved
                    && saga.order.status != order::Status::Approved;
                if approves && expired {
                    saga.late_forward_change.get_or_insert(Service::Order);
                }
                if order.status != order::Status::Pending {
                    saga.first_terminal.get_or_insert(order.status);
                }
                saga.order = order;
                saga.at_mut(Service::Order).outbox.extend(emit);
            }
            Decided::Exchange(exchange::Decision::Exchange { exchange, emit }) => {
                // The transaction stays open until the guarded INSERT: a step of its own.
                saga.exchange_open = Some((offset, exchange, emit));
                return;
            }
            Decided::Exchange(exchange::Decision::Compensate { emit }) => {
                saga.exchange = Some(exchange::compensated(saga.exchange));
                saga.at_mut(Service::Exchange).outbox.push(emit);
            }
            Decided::Point(point::Decision::Change {
                entry,
                account,
                emit,
            }) => {
                let was_used = saga.ledger.as_ref().map(|e| e.status) == Some(point::Status::Used);
                let takes = entry.status == point::Status::Used && !was_used;
                if takes && expired {
                    saga.late_forward_change.get_or_insert(Service::Point);
                }
                saga.ledger = Some(entry);
                if let Some(account) = account {
                    state.accounts.insert(account.user_id, account.balance);
                }
                saga.at_mut(Service::Point).outbox.push(emit);
            }
            Decided::Point(point::Decision::Inconsistent(problem)) => {
                // The handler fails: nothing is written, and after its attempts the event is
                // set aside on the dead-letter topic, so the consumer moves on.
                saga.inconsistency.get_or_insert(problem);
                saga.at_mut(Service::Point).position = offset + 1;
                return;
            }
            Decided::Deadline(decision) => {
                saga.deadline = deadline::written(decision, saga.deadline)
            }
            Decided::Order(order::Decision::Ignore(_))
            | Decided::Exchange(exchange::Decision::Ignore(_))
            | Decided::Point(point::Decision::Ignore(_)) => {}
        }
        let participant = saga.at_mut(service);
        participant.inbox.insert(id);
        participant.position = offset + 1;
    }
}

/// The exchange's guarded INSERT: it records the exchange if the guard lets it, and the event
/// is done either way (refused, it is recorded as ignored).
fn insert_exchange(saga: &mut Saga) {
    let Some((offset, new, emit)) = saga.exchange_open.take() else {
        return;
    };
    let recorded = exchange::record(saga.exchange, new.point, saga.expired);
    if recorded != saga.exchange {
        if saga.expired {
            saga.late_forward_change.get_or_insert(Service::Exchange);
        }
        saga.exchange = recorded;
        saga.at_mut(Service::Exchange).outbox.push(emit);
    }
    let id = saga.topic[offset];
    let participant = saga.at_mut(Service::Exchange);
    participant.inbox.insert(id);
    participant.position = offset + 1;
}

/// The id of a new copy of `service`'s outbox `row`.
fn copy_of(saga: &Saga, service: Service, row: usize) -> EventId {
    let copies = saga
        .topic
        .iter()
        .filter(|id| id.from == service && id.row == row);
    EventId {
        from: service,
        row,
        copy: copies.map(|id| id.copy).max().unwrap_or(0) + 1,
    }
}

/// The time the model's clock shows: the saga's deadline once it has passed, just before it
/// until then.
fn now(saga: &Saga) -> DateTime<Utc> {
    if saga.expired {
        DEADLINE
    } else {
        DEADLINE - chrono::Duration::milliseconds(1)
    }
}

impl Model for Scenario {
    type State = State;
    type Action = Action;

    /// Every order created, its `OrderCreated` in the order service's outbox.
    fn initial_state(&self) -> State {
        let participant = Participant {
            inbox: BTreeSet::new(),
            outbox: Vec::new(),
            position: 0,
            sent: 0,
        };
        let saga = |amount: &Decimal| {
            let mut services = [(); 4].map(|()| participant.clone());
            services[Service::Order as usize]
                .outbox
                .push(Event::OrderCreated {
                    holder_id: self.holder.to_string(),
                    currency_id: Some("1".to_string()),
                    amount: *amount,
                });
            Saga {
                expired: false,
                topic: Vec::new(),
                order: order::Order::created(),
                exchange: None,
                ledger: None,
                deadline: None,
                exchange_open: None,
                services,
                first_terminal: None,
                late_forward_change: None,
                inconsistency: None,
            }
        };
        State {
            sagas: self.amounts.iter().map(saga).collect(),
            accounts: self
                .balance
                .map(|balance| (self.holder.to_string(), balance))
                .into_iter()
                .collect(),
            faults_left: self.faults,
        }
    }

    fn actions(&self, state: &State) -> Vec<Action> {
        let mut actions = Vec::new();
        for (s, saga) in state.sagas.iter().enumerate() {
            for service in Service::ALL {
                let p = saga.at(service);
                let open = service == Service::Exchange && saga.exchange_open.is_some();
                if open {
                    actions.push(Action::InsertExchange(s));
                } else if saga.next_for(service).is_some() {
                    actions.push(Action::Handle(service, s));
                }
                if state.faults_left.crashes > 0 {
                    // Resuming at an event the service passes over is resuming at the next
                    // one it consumes; resuming where it is only rolls back an open transaction.
                    let redelivered = saga.consumed(service, 0..p.position);
                    let resumes = redelivered.chain(open.then_some(p.position));
                    actions.extend(resumes.map(|offset| Action::Crash(service, s, offset)));
                }
                if p.sent < p.outbox.len() {
                    actions.push(Action::Publish(service, s));
                }
                if state.faults_left.relay_crashes > 0 {
                    actions.extend((0..p.sent).map(|row| Action::RelayCrash(service, s, row)));
                }
                if state.faults_left.copies > 0 {
                    actions.extend((0..p.sent).map(|row| Action::PublishCopy(service, s, row)));
                }
            }
            if !saga.expired {
                actions.push(Action::DeadlinePasses(s));
            }
            if deadline::fire(saga.deadline, DEADLINE, now(saga)) != saga.deadline {
                actions.push(Action::TimerFires(s));
            }
        }
        actions
    }

    fn next_state(&self, state: &State, action: &Action) -> State {
        let mut next = state.clone();
        match *action {
            Action::Handle(service, s) => self.handle(&mut next, service, s),
            Action::InsertExchange(s) => insert_exchange(&mut next.sagas[s]),
            Action::Crash(service, s, offset) => {
                let saga = &mut next.sagas[s];
                if service == Service::Exchange {
                    saga.exchange_open = None;
                }
                saga.at_mut(service).position = offset;
                next.faults_left.crashes -= 1;
            }
            Action::Publish(service, s) => {
                let saga = &mut next.sagas[s];
                let row = saga.at(service).sent;
                saga.topic.push(EventId {
                    from: service,
                    row,
                    copy: 0,
                });
                saga.at_mut(service).sent += 1;
            }
            Action::RelayCrash(service, s, row) => {
                next.sagas[s].at_mut(service).sent = row;
                next.faults_left.relay_crashes -= 1;
            }
            Action::PublishCopy(service, s, row) => {
                let copy = copy_of(&next.sagas[s], service, row);
                next.sagas[s].topic.push(copy);
                next.faults_left.copies -= 1;
            }
            Action::DeadlinePasses(s) => next.sagas[s].expired = true,
            Action::TimerFires(s) => {
                let saga = &mut next.sagas[s];
                saga.deadline = deadline::fire(saga.deadline, DEADLINE, now(saga));
                saga.at_mut(Service::Deadline)
                    .outbox
                    .push(Event::DeadlineReached);
            }
        }
        next
    }

    fn describe(&self, state: &State, action: &Action) -> String {
        let line = describe_step(self, state, action);
        if state.sagas.len() > 1 {
            format!("saga {}: {line}", action.saga() + 1)
        } else {
            line
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        crate::properties::of(self)
    }
}

fn describe_step(scenario: &Scenario, state: &State, action: &Action) -> String {
    let name = |saga: &Saga, id: EventId| format!("{} ({id})", saga.event(id).event_type());
    match *action {
        Action::Handle(service, s) => {
            let saga = &state.sagas[s];
            let Some((offset, id, decided)) = scenario.next_decision(state, service, s) else {
                return format!("{service} has nothing to handle");
            };
            let outcome = match decided {
                Decided::Duplicate => "in the inbox already: a duplicate, skipped".to_string(),
                Decided::Order(decision) => format!("{decision:?}"),
                Decided::Exchange(exchange::Decision::Exchange { .. }) => {
                    "decides to exchange; its guarded INSERT is still to come".to_string()
                }
                Decided::Exchange(decision) => format!("{decision:?}"),
                Decided::Point(decision) => format!("{decision:?}"),
                Decided::Deadline(decision) => {
                    let written = deadline::written(decision, saga.deadline);
                    // The placeholder time in `Schedule` would only confuse.
                    let decision = match decision {
                        deadline::Decision::Schedule { .. } => "Schedule".to_string(),
                        other => format!("{other:?}"),
                    };
                    format!("{decision}, so the deadline is {written:?}")
                }
            };
            format!(
                "{service} handles {} at offset {offset} (expired={}) -> {outcome}",
                name(saga, id),
                saga.expired
            )
        }
        Action::InsertExchange(s) => {
            let saga = &state.sagas[s];
            let new = saga.exchange_open.as_ref().map(|(_, new, _)| new.point);
            let recorded = new.map(|point| exchange::record(saga.exchange, point, saga.expired));
            let outcome = if recorded.is_some_and(|recorded| recorded != saga.exchange) {
                "EXCHANGED, emits ExchangeSucceed".to_string()
            } else {
                format!("no row: {}", exchange::EXPIRED_DURING_PROCESSING)
            };
            format!(
                "exchange runs its guarded INSERT (expired={}) -> {outcome}",
                saga.expired
            )
        }
        Action::Crash(service, _, offset) => {
            format!("{service} crashes and resumes at its committed offset {offset}")
        }
        Action::Publish(service, s) => {
            let saga = &state.sagas[s];
            let id = EventId {
                from: service,
                row: saga.at(service).sent,
                copy: 0,
            };
            format!(
                "{service} relay publishes {} at offset {}",
                name(saga, id),
                saga.topic.len()
            )
        }
        Action::RelayCrash(service, _, row) => format!(
            "{service} relay crashes before marking its rows published; it publishes again \
             from row {row}"
        ),
        Action::PublishCopy(service, s, row) => {
            let saga = &state.sagas[s];
            format!(
                "{} is published again under a new id, at offset {}",
                name(saga, copy_of(saga, service, row)),
                saga.topic.len()
            )
        }
        Action::DeadlinePasses(_) => "the deadline passes".to_string(),
        Action::TimerFires(_) => "deadline timer fires -> DeadlineReached".to_string(),
    }
}
