//! A network partition between brokers, in a test binary of its own: its three brokers each run
//! on a host of their own (network namespaces, as `HOSTS=1` makes them; it takes root), and
//! never beside the other tests' clusters and timing checks.

mod support;

use e2e_tests::{SETTLE, Servers, Stack, infra::PrivateKafka};
use harness::network::Network;
use support::{BALANCE, HOLDER, all_ready, every_order_settled, first_orders, orders_during};

/// A network partition that heals: the first node of three is cut off from the other two
/// mid-flow (clients still reach it; it leads partitions and coordinates groups until the
/// controller replaces it, and does not know it was), for longer than the controller takes to
/// move its partitions, then the cut heals. Every saga, placed before, during or after the cut,
/// is approved, and the invariants hold. The deadline is long, so that this checks what the
/// partition does to the sagas' outcome, not how fast clients leave a deposed broker (the chaos
/// run's table measures that).
#[tokio::test]
async fn on_three_brokers_one_cut_off_from_the_others_and_healed_every_saga_is_approved()
-> anyhow::Result<()> {
    let network = Network::new("e2e", [10, 78, 0]);
    let kafka = PrivateKafka::cluster_on("cutoff", 3, network).await?;
    let servers = Servers::from_env().with_kafka(kafka.bootstrap());
    let stack = Stack::start_on(servers, "cutoff", &[("DEADLINE_MS", "60000")]).await?;
    stack.open_account(HOLDER, BALANCE).await?;

    orders_during(&stack, async {
        first_orders(&stack).await?;
        kafka.cut(1)?;
        let during = first_orders(&stack).await?;
        tokio::time::sleep(CUT).await;
        kafka.heal(1)?;
        kafka.in_sync(&stack.topic).await?;
        for order in during.into_iter().chain(first_orders(&stack).await?) {
            stack.finished(order, "APPROVED", SETTLE).await?;
        }
        Ok(())
    })
    .await?;
    assert!(
        all_ready(&stack).await,
        "after the cut healed, every service is ready"
    );
    let settled = every_order_settled(&stack, "a broker cut off and healed").await?;
    assert_eq!(settled.rejected, 0, "every order was approved");
    Ok(())
}

/// How long the broker stays cut off: beyond the controller's 1.5 s session, so that its
/// partitions move while it still believes it leads them.
const CUT: std::time::Duration = std::time::Duration::from_secs(8);
