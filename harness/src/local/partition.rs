//! Cuts in the network of a stack that runs on hosts of its own (`HOSTS=1`), as
//! `scripts/partition` makes and heals them ([`crate::network`]).

use anyhow::{Context, bail};

use super::{Local, services::SERVICES};
use crate::network::Network;

impl Local {
    /// Drops the traffic between the parts `a` and `b` (both comma-separated lists; a part of
    /// both sides counts as `a`'s), both ways or, with `one_way`, from `a` to `b`; with `heal`,
    /// lets it through again.
    pub fn partition(&self, a: &str, b: &str, one_way: bool, heal: bool) -> anyhow::Result<()> {
        let network = self.cut_network()?;
        // `kafka-2 kafka` is broker 2 cut off from the others.
        let a = self.parts(a)?;
        let b: Vec<String> = (self.parts(b)?.into_iter())
            .filter(|part| !a.contains(part))
            .collect();
        if b.is_empty() {
            bail!("the other side has no part that is not on the first side too");
        }
        let done = if heal {
            network.heal(&a, &b, one_way)?;
            "healed"
        } else {
            network.cut(&a, &b, one_way)?;
            "cut"
        };
        let arrow = if one_way { "->" } else { "<->" };
        println!("{} {arrow} {}: {done}", a.join(","), b.join(","));
        Ok(())
    }

    /// Lets every packet through again.
    pub fn heal_partitions(&self) -> anyhow::Result<()> {
        self.cut_network()?.heal_all()?;
        println!("every cut healed");
        Ok(())
    }

    /// Prints the cuts in place, one direction a line.
    pub fn list_partitions(&self) -> anyhow::Result<()> {
        let cuts = self.cut_network()?.cuts();
        if cuts.is_empty() {
            println!("no cuts: every part reaches every other");
        }
        for cut in cuts {
            println!("{cut}");
        }
        Ok(())
    }

    fn cut_network(&self) -> anyhow::Result<Network> {
        let network = self
            .network()
            .context("the stack does not run on hosts of its own: HOSTS=1 scripts/up first")?;
        if !network.exists() {
            bail!("the stack's network is not up: HOSTS=1 scripts/up first");
        }
        Ok(network)
    }

    /// The parts a side names: `kafka` is every broker, a service's name every instance of it.
    fn parts(&self, side: &str) -> anyhow::Result<Vec<String>> {
        let instances = self.stack_env().map_or(1, |env| env.instances);
        let mut parts = Vec::new();
        for name in side.split(',').map(str::trim) {
            match name {
                "kafka" => {
                    let nodes = self.kafka_nodes(self.brokers()?);
                    parts.extend(nodes.into_iter().map(|(name, _)| name));
                }
                service if SERVICES.contains(&service) => {
                    parts.extend((1..=instances).map(|n| format!("{service}-{n}")));
                }
                part => {
                    Network::local().address(part)?;
                    parts.push(part.to_string());
                }
            }
        }
        Ok(parts)
    }
}
