//! A Kafka cluster of three brokers (replication 3, two in sync) under the suite: in a test
//! binary of its own, so that its three JVMs do not run beside the timing checks of the other
//! fault tests.

mod support;

use e2e_tests::{SETTLE, Servers, Stack, infra::PrivateKafka};
use support::{BALANCE, HOLDER, all_ready, every_order_settled, first_orders, orders_during};

/// On three brokers (replication 3, two in sync), losing one loses nothing and stops nothing:
/// the broker first in every service's bootstrap list is killed mid-flow and never comes back,
/// and every saga, before and after, is approved. The deadline is long, so that this checks
/// what a broker loss does, not how fast a loaded machine is.
#[tokio::test]
async fn on_three_brokers_one_killed_for_good_mid_flow_every_saga_is_still_approved()
-> anyhow::Result<()> {
    let mut kafka = PrivateKafka::cluster("threebrokers", 3).await?;
    let servers = Servers::from_env().with_kafka(kafka.bootstrap());
    let stack = Stack::start_on(servers, "threebrokers", &[("DEADLINE_MS", "60000")]).await?;
    stack.open_account(HOLDER, BALANCE).await?;

    orders_during(&stack, async {
        first_orders(&stack).await?;
        kafka.kill_node(1)?;
        let after = first_orders(&stack).await?;
        for order in after {
            stack.finished(order, "APPROVED", SETTLE).await?;
        }
        Ok(())
    })
    .await?;
    assert!(
        all_ready(&stack).await,
        "two brokers of three are enough for every service to be ready"
    );
    let settled = every_order_settled(&stack, "a broker lost of three").await?;
    assert_eq!(settled.rejected, 0, "every order was approved");
    Ok(())
}
