//! What the fault tests share: one holder with a large balance, orders placed all along while
//! a fault runs, and the check that every order the holder placed settled consistently.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use e2e_tests::{SERVICES, SETTLE, Settled, Stack, ids};

pub const HOLDER: &str = "jjy";
pub const BALANCE: i64 = 1_000_000;

/// Waits until every order of the holder has settled and checks the invariants on them all.
pub async fn every_order_settled(stack: &Stack, fault: &str) -> anyhow::Result<Settled> {
    let (_, all) = stack.get("order", "/orders?limit=1000").await?;
    let orders = ids(&all);
    let settled = stack
        .settle_and_check(HOLDER, BALANCE, &orders, SETTLE)
        .await?;
    println!("{} orders around {fault}: {settled:?}", orders.len());
    Ok(settled)
}

/// Twenty orders at once, before a fault.
pub async fn first_orders(stack: &Stack) -> anyhow::Result<Vec<i64>> {
    futures::future::try_join_all((0..20).map(|_| stack.order(HOLDER, 1, 10))).await
}

/// Places an order every 50 ms while `faults` runs, and returns what `faults` returned. An
/// order refused during an outage is not retried; one whose POST was cut off may exist or not,
/// so the checks afterwards read every order the holder has ([`every_order_settled`]).
pub async fn orders_during<T>(
    stack: &Stack,
    faults: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let done = AtomicBool::new(false);
    let placing = async {
        while !done.load(Ordering::Relaxed) {
            let _ = stack.order(HOLDER, 1, 10).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let faulting = async {
        let result = faults.await;
        done.store(true, Ordering::Relaxed);
        result
    };
    let ((), result) = tokio::join!(placing, faulting);
    result
}

/// Whether every service answers its readiness probe with 200.
pub async fn all_ready(stack: &Stack) -> bool {
    for service in SERVICES {
        match stack.get(service, "/readyz").await {
            Ok((200, _)) => {}
            _ => return false,
        }
    }
    true
}
