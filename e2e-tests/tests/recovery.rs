//! The suite heals itself (saga-rules §8): a broker killed and restarted or paused, a service
//! stopped while the broker is paused, PostgreSQL stopped with `-m immediate` and restarted, a
//! consumer fenced out of its group, an event whose handling always fails, and one of two
//! instances of every service killed. After the fault, no test here does anything but wait
//! (and restart what it stopped): every saga must settle by itself.

use std::time::Duration;

use e2e_tests::{
    SERVICES, SETTLE, Servers, Stack,
    infra::{Crashable, PrivateKafka, PrivatePostgres},
    time_until, wait_until,
};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

mod support;

use support::{BALANCE, HOLDER, all_ready, every_order_settled, first_orders, orders_during};

#[tokio::test]
async fn a_broker_killed_mid_flow_stops_no_saga_and_readiness_says_so_until_it_is_back()
-> anyhow::Result<()> {
    let mut kafka = PrivateKafka::start("brokerkill").await?;
    let servers = Servers::from_env().with_kafka(kafka.bootstrap());
    let stack = Stack::start_on(servers, "brokerkill", &[("DEADLINE_MS", "4000")]).await?;
    stack.open_account(HOLDER, BALANCE).await?;

    let recovered = orders_through_a_crash(&stack, &mut kafka, "kafka").await?;
    println!("every service ready {recovered:?} after the broker was back");
    approved_then_settled(&stack, 1, "a broker restart").await
}

/// A pause (SIGSTOP) catches the relays and consumers mid-send; once the broker runs again,
/// every client must work again at once: a saga started then is approved within its deadline.
#[tokio::test]
async fn after_a_broker_pause_mid_flow_new_sagas_are_approved_in_time_and_none_is_stuck()
-> anyhow::Result<()> {
    let mut kafka = PrivateKafka::start("brokerpause").await?;
    let servers = Servers::from_env().with_kafka(kafka.bootstrap());
    let stack = Stack::start_on(servers, "brokerpause", &[]).await?;
    stack.open_account(HOLDER, BALANCE).await?;

    orders_during(&stack, async {
        first_orders(&stack).await?;
        kafka.pause()?;
        // Longer than the producers' message timeout, so that sends time out meanwhile.
        tokio::time::sleep(Duration::from_secs(7)).await;
        kafka.resume()?;
        Ok(())
    })
    .await?;
    let recovered = time_until(SETTLE, || all_ready(&stack)).await?;
    println!("every service ready {recovered:?} after the broker resumed");
    // The default deadline of 5 s: a client still wedged by the pause would let these run
    // into it.
    approved_then_settled(&stack, 5, "a broker pause").await
}

/// SIGTERM while the broker is paused: the service cannot hand over or publish anything, and
/// must exit within its shutdown bound all the same; the sagas settle once it is back.
#[tokio::test]
async fn a_sigterm_while_the_broker_is_paused_ends_the_process_within_its_bound()
-> anyhow::Result<()> {
    const BOUND: Duration = Duration::from_secs(3);
    let mut kafka = PrivateKafka::start("termpause").await?;
    let bound = BOUND.as_millis().to_string();
    let servers = Servers::from_env().with_kafka(kafka.bootstrap());
    let mut stack = Stack::start_on(
        servers,
        "termpause",
        &[("DEADLINE_MS", "60000"), ("SHUTDOWN_TIMEOUT_MS", &bound)],
    )
    .await?;
    stack.open_account(HOLDER, BALANCE).await?;
    let mut orders = first_orders(&stack).await?;
    kafka.pause()?;
    // Orders written while the relay cannot publish them.
    orders.extend(first_orders(&stack).await?);
    let stopping = std::time::Instant::now();
    stack.stop("order").await?;
    let stopped = stopping.elapsed();
    kafka.resume()?;
    println!("order stopped {stopped:?} after SIGTERM with the broker paused");
    assert!(
        stopped < BOUND + Duration::from_secs(2),
        "the order service took {stopped:?} to stop; its bound is {BOUND:?}"
    );
    stack.restart("order", &[]).await?;
    let settled = stack
        .settle_and_check(HOLDER, BALANCE, &orders, SETTLE)
        .await?;
    assert_eq!(settled.rejected, 0, "every order was approved");
    Ok(())
}

#[tokio::test]
async fn postgres_stopped_immediately_mid_flow_stops_no_saga() -> anyhow::Result<()> {
    let mut postgres = PrivatePostgres::start("pgcrash").await?;
    let servers = Servers::from_env().with_postgres(postgres.url());
    let stack = Stack::start_on(servers, "pgcrash", &[("DEADLINE_MS", "4000")]).await?;
    stack.open_account(HOLDER, BALANCE).await?;

    let recovered = orders_through_a_crash(&stack, &mut postgres, "database").await?;
    println!("every service ready {recovered:?} after PostgreSQL was back");
    let after = stack.order(HOLDER, 1, 10).await?;
    stack.finished(after, "APPROVED", SETTLE).await?;

    // A POST cut off by the crash may or may not have created its order: check them all.
    every_order_settled(&stack, "a database crash").await?;
    Ok(())
}

#[tokio::test]
async fn a_consumer_fenced_out_of_its_group_is_replaced_and_consumes_again() -> anyhow::Result<()> {
    // Static membership, as a user may ask for it through the librdkafka settings.
    const MEMBER: &str = "fenced-member";
    let stack = Stack::start("fenced", &[("RDKAFKA_GROUP_INSTANCE_ID", MEMBER)]).await?;
    stack.open_account(HOLDER, BALANCE).await?;
    let first = stack.order(HOLDER, 1, 10).await?;
    stack.finished(first, "APPROVED", SETTLE).await?;

    // A second member with the point service's static id fences the service's consumer: a
    // fatal error for librdkafka, which used to stop the service consuming for good.
    let intruder: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.servers.kafka)
        .set("group.id", format!("{}-point-service", stack.id))
        .set("group.instance.id", MEMBER)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()?;
    intruder.subscribe(&[&stack.topic])?;
    let recreated = wait_until(SETTLE, || {
        // The intruder must poll to join; the service fences it back once it rejoins.
        let _ = intruder.poll(Duration::from_millis(100));
        async {
            let recreated = stack
                .metric(
                    "point",
                    "kafka_clients_recreated",
                    &[("client", "consumer")],
                )
                .await
                .ok()?;
            (recreated >= 1.0).then_some(recreated)
        }
    })
    .await?;
    drop(intruder);
    assert!(
        stack
            .log("point")?
            .contains("kafka consumer unusable; recreating it"),
        "the replacement is logged with its reason"
    );

    time_until(SETTLE, || all_ready(&stack)).await?;
    let second = stack.order(HOLDER, 1, 10).await?;
    stack.finished(second, "APPROVED", SETTLE).await?;
    println!("point's consumer was recreated {recreated} time(s)");
    Ok(())
}

#[tokio::test]
async fn an_event_whose_handling_always_fails_is_set_aside_and_its_saga_ends_by_its_deadline()
-> anyhow::Result<()> {
    let stack = Stack::start(
        "failing",
        &[
            ("DEADLINE_MS", "3000"),
            ("EVENT_MAX_ATTEMPTS", "3"),
            ("EVENT_RETRY_BACKOFF_MS", "50"),
        ],
    )
    .await?;
    stack.open_account("poison", 1000).await?;
    stack.open_account(HOLDER, BALANCE).await?;
    // The point ledger refuses this holder: every attempt to use or refuse its points fails
    // the same way, a constraint the event cannot satisfy however often it is tried.
    sqlx::query(
        "ALTER TABLE point_transactions ADD CONSTRAINT refuse_poison
         CHECK (user_id IS DISTINCT FROM 'poison')",
    )
    .execute(&stack.db("point").await?)
    .await?;

    let poisoned = stack.order("poison", 1, 100).await?;
    let others = futures::future::try_join_all((0..8).map(|_| stack.order(HOLDER, 1, 10))).await?;
    for order_id in &others {
        stack.finished(*order_id, "APPROVED", SETTLE).await?;
    }
    // Rejected by its deadline, with its compensation run to the end.
    stack
        .finished(poisoned, "REJECTED DUE TO DEADLINE", SETTLE)
        .await?;
    assert_eq!(stack.balance("poison").await?, "1000");

    let letters = stack.dead_letters().await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["eventType"], "ExchangeSucceed");
    assert_eq!(letters[0]["orderId"], poisoned);
    for (name, labels, expected) in [
        ("events_dead_lettered", &[("exception", "failed")][..], 1.0),
        (
            "message_errors",
            &[("job", "ExchangeSucceed"), ("exception", "handler")],
            3.0,
        ),
    ] {
        assert_eq!(
            stack.metric("point", name, labels).await?,
            expected,
            "{name}"
        );
    }
    stack
        .settle_and_check(HOLDER, BALANCE, &others, SETTLE)
        .await?;
    Ok(())
}

#[tokio::test]
async fn with_two_instances_of_every_service_one_killed_mid_flow_fails_over_within_the_deadline_and_loses_nothing()
-> anyhow::Result<()> {
    let mut stack = Stack::start("twoinstances", &[("DEADLINE_MS", "30000")]).await?;
    for service in SERVICES {
        stack.spawn_instance(service, &format!("{service}-2"), &[])?;
    }
    for service in SERVICES {
        stack.wait_ready(&format!("{service}-2")).await?;
    }
    stack.open_account(HOLDER, BALANCE).await?;
    let mut orders = first_orders(&stack).await?;
    let killed = std::time::Instant::now();
    for service in SERVICES {
        stack.kill(service)?;
    }
    // The survivors take the partitions over once the group gives up on the dead members,
    // within a saga's default deadline (5 s): the consumers' sessions last 2 s.
    for service in SERVICES {
        let instance = format!("{service}-2");
        wait_until(SETTLE, || async {
            let assigned = stack
                .metric(&instance, "kafka_partitions_assigned", &[])
                .await
                .ok()?;
            (assigned == e2e_tests::PARTITIONS as f64).then_some(())
        })
        .await?;
    }
    let failover = killed.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "the survivors held every partition {failover:?} after the kill"
    );
    for service in SERVICES {
        stack.answer_from(service, &format!("{service}-2"));
    }
    orders.extend(first_orders(&stack).await?);
    let settled = stack
        .settle_and_check(HOLDER, BALANCE, &orders, SETTLE)
        .await?;
    assert_eq!(settled.rejected, 0, "every order was approved in time");
    Ok(())
}

/// After a fault: `count` more orders, each approved in time before the next is placed; then
/// every order the holder placed must settle consistently.
async fn approved_then_settled(stack: &Stack, count: usize, fault: &str) -> anyhow::Result<()> {
    for _ in 0..count {
        let after = stack.order(HOLDER, 1, 10).await?;
        stack.finished(after, "APPROVED", SETTLE).await?;
    }
    every_order_settled(stack, fault).await?;
    Ok(())
}

/// Places orders all along while `server` crashes after the first ones and comes back: every
/// service must first say that `dependency` is unreachable, then be ready again. Returns how
/// long the services took to be ready once the server was back.
async fn orders_through_a_crash(
    stack: &Stack,
    server: &mut impl Crashable,
    dependency: &str,
) -> anyhow::Result<Duration> {
    orders_during(stack, async {
        first_orders(stack).await?;
        server.crash()?;
        every_service_unready_for(stack, dependency).await?;
        server.restart().await?;
        time_until(SETTLE, || all_ready(stack)).await
    })
    .await
}

/// Waits until every service answers its readiness probe with 503, saying `dependency` is
/// unreachable.
async fn every_service_unready_for(stack: &Stack, dependency: &str) -> anyhow::Result<()> {
    for service in SERVICES {
        wait_until(SETTLE, || async {
            let (status, body) = stack.get(service, "/readyz").await.ok()?;
            (status == 503 && body[dependency] == false).then_some(())
        })
        .await?;
    }
    Ok(())
}
