//! Hosts on a network of their own, on this machine: each part of a stack (a broker, a service
//! instance, PostgreSQL, the gateway) in its own network namespace with its own address, joined
//! to the others by a veth pair and a bridge, so that the traffic between two parts crosses a
//! network that can be cut, in one direction or both, and healed. It takes root, and touches
//! nothing but the namespaces, veth pairs and bridge it makes (all named after its prefix) and
//! one rule that lets the bridge's traffic through the host's `FORWARD` chain, which Docker's
//! engine sets to drop.
//!
//! This machine (the root namespace) reaches every part on the bridge's first address: the
//! scripts, the load and the checks run there, as the control node of a Jepsen test does, and no
//! cut ever separates them from the parts. A cut is a rule in a part's own firewall (each
//! namespace has its own), so it drops packets the way a failed link does: silently, leaving
//! TCP to its timeouts.

use std::{net::Ipv4Addr, process::Command};

use anyhow::{Context, bail};

use crate::process::run;

pub struct Network {
    /// What its namespaces, veth pairs and bridge are named after.
    prefix: String,
    /// The /24 its parts take their addresses from; the bridge has `.1`.
    subnet: [u8; 3],
}

/// The parts of a stack and the last byte of their addresses.
const ADDRESSES: [(&str, u8); 7] = [
    ("postgres", 2),
    ("gateway", 3),
    ("kafka", 10),
    ("order", 20),
    ("exchange", 30),
    ("point", 40),
    ("deadline", 50),
];

impl Network {
    /// The network of the scripts' stack (`HOSTS=1`): namespaces `saga-NAME`, bridge `saga-br`,
    /// addresses in 10.77.0.0/24.
    pub fn local() -> Network {
        Network::new("saga", [10, 77, 0])
    }

    /// A network whose namespaces, veth pairs and bridge are named after `prefix` (a few
    /// letters), with addresses in `subnet`.0/24.
    pub fn new(prefix: &str, subnet: [u8; 3]) -> Network {
        Network {
            prefix: prefix.into(),
            subnet,
        }
    }

    /// The address of a part, named as its log file is: `postgres`, `gateway`, `kafka` (a single
    /// broker) or `kafka-N`, or `SERVICE-N` (instances 1 to 9).
    pub fn address(&self, part: &str) -> anyhow::Result<Ipv4Addr> {
        let (name, number) = match part.rsplit_once('-') {
            Some((name, number)) => (name, number.parse::<u8>().ok()),
            None => (part, None),
        };
        let base = ADDRESSES.iter().find(|(known, _)| *known == name);
        let last = match (base, number) {
            (Some(("kafka" | "order" | "exchange" | "point" | "deadline", base)), Some(n))
                if (1..=9).contains(&n) =>
            {
                base + n
            }
            (Some(("postgres" | "gateway" | "kafka", base)), None) => *base,
            _ => bail!(
                "no host is named {part:?}: postgres, gateway, kafka, kafka-N, or an instance \
                 such as order-1"
            ),
        };
        let [a, b, c] = self.subnet;
        Ok(Ipv4Addr::new(a, b, c, last))
    }

    /// The address this machine has on the network: the bridge's.
    pub fn gateway_address(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// The network namespace of `part`.
    pub fn namespace(&self, part: &str) -> String {
        format!("{}-{part}", self.prefix)
    }

    /// The namespaces of this network that exist, by part.
    pub fn parts(&self) -> Vec<String> {
        let listed = run(Command::new("ip").args(["netns", "list"])).unwrap_or_default();
        let own = format!("{}-", self.prefix);
        let mut parts: Vec<String> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().next()?.strip_prefix(&own))
            .map(str::to_string)
            .collect();
        parts.sort();
        parts
    }

    /// Whether the bridge exists.
    pub fn exists(&self) -> bool {
        run(Command::new("ip").args(["link", "show", &self.bridge()])).is_ok()
    }

    /// Makes the bridge, unless it exists, with this machine's address on it.
    pub fn create(&self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        if !self.exists() {
            run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]))
                .context("cannot make a bridge (this takes root)")?;
            let address = format!("{}/24", self.gateway_address());
            run(Command::new("ip").args(["addr", "add", &address, "dev", &bridge]))?;
            run(Command::new("ip").args(["link", "set", &bridge, "up"]))?;
        }
        // Where bridged traffic passes the host's firewall (br_netfilter, which Docker's engine
        // loads, with its FORWARD policy of DROP), the bridge's own traffic is let through.
        let rule = ["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"];
        if run(Command::new("iptables").args(["-w", "-C"]).args(rule)).is_err() {
            run(Command::new("iptables").args(["-w", "-I"]).args(rule))?;
        }
        Ok(())
    }

    /// Gives `part` its namespace and address on the bridge, unless it has them.
    pub fn add(&self, part: &str) -> anyhow::Result<()> {
        let address = self.address(part)?;
        let namespace = self.namespace(part);
        if self.parts().iter().any(|known| known == part) {
            return Ok(());
        }
        self.create()?;
        // The host's end of the pair is named after the last byte of the address: interface
        // names are short (15 bytes).
        let veth = format!("{}{}", self.prefix, address.octets()[3]);
        let _ = run(Command::new("ip").args(["link", "del", &veth]));
        run(Command::new("ip").args(["netns", "add", &namespace]))?;
        run(Command::new("ip")
            .args(["link", "add", &veth, "type", "veth", "peer"])
            .args(["name", "eth0", "netns", &namespace]))?;
        run(Command::new("ip").args(["link", "set", &veth, "master", &self.bridge(), "up"]))?;
        let ip = |args: &[&str]| run(Command::new("ip").args(["-n", &namespace]).args(args));
        ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["link", "set", "eth0", "up"])?;
        ip(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Drops the packets from each part of `from` to each of `to`, and unless `one_way` those
    /// from `to` to `from` too.
    pub fn cut(&self, from: &[String], to: &[String], one_way: bool) -> anyhow::Result<()> {
        self.rules("-A", from, to, one_way)
    }

    /// Lets through again what [`cut`](Self::cut) with the same parts dropped.
    pub fn heal(&self, from: &[String], to: &[String], one_way: bool) -> anyhow::Result<()> {
        self.rules("-D", from, to, one_way)
    }

    /// Lets every packet through again.
    pub fn heal_all(&self) -> anyhow::Result<()> {
        for part in self.parts() {
            self.firewall(&part, &["-F"])?;
        }
        Ok(())
    }

    /// The cuts in place, one line each: `A <-> B` both ways, `A -> B` one way.
    pub fn cuts(&self) -> Vec<String> {
        let parts = self.parts();
        let name = |address: &str| {
            (parts.iter())
                .find(|part| self.address(part).is_ok_and(|a| a.to_string() == address))
                .cloned()
                .unwrap_or_else(|| address.to_string())
        };
        let mut cuts = Vec::new();
        for part in &parts {
            let rules = run(&mut self.iptables(part, &["-S"])).unwrap_or_default();
            let dropped = |prefix: &str| -> Vec<String> {
                (rules.lines())
                    .filter_map(|line| line.strip_prefix(prefix)?.split('/').next())
                    .map(str::to_string)
                    .collect()
            };
            let incoming = dropped("-A INPUT -s ");
            for address in dropped("-A OUTPUT -d ") {
                let arrow = if incoming.contains(&address) {
                    "<->"
                } else {
                    "->"
                };
                cuts.push(format!("{part} {arrow} {}", name(&address)));
            }
        }
        cuts
    }

    /// Removes every namespace of this network and its bridge. The processes in them must have
    /// stopped: a namespace outlives its name while a process runs in it.
    pub fn remove(&self) -> anyhow::Result<()> {
        for part in self.parts() {
            run(Command::new("ip").args(["netns", "del", &self.namespace(&part)]))?;
        }
        if self.exists() {
            let bridge = self.bridge();
            let rule = ["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"];
            let _ = run(Command::new("iptables").args(["-w", "-D"]).args(rule));
            run(Command::new("ip").args(["link", "del", &bridge]))?;
        }
        Ok(())
    }

    /// A cut (`-A`) or its healing (`-D`), as rules in the firewalls of `from`: its packets to
    /// `to` dropped on the way out, and unless `one_way` theirs dropped on the way in.
    fn rules(
        &self,
        action: &str,
        from: &[String],
        to: &[String],
        one_way: bool,
    ) -> anyhow::Result<()> {
        let parts = self.parts();
        if let Some(missing) = from.iter().find(|part| !parts.contains(part)) {
            bail!("{missing} is not on the network (is the stack up with HOSTS=1?)");
        }
        for a in from {
            for b in to {
                if a == b {
                    bail!("{a} cannot be cut from itself");
                }
                let b = self.address(b)?.to_string();
                self.firewall(a, &[action, "OUTPUT", "-d", &b, "-j", "DROP"])?;
                if !one_way {
                    self.firewall(a, &[action, "INPUT", "-s", &b, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Changes the firewall of `part`, which must be on the network.
    fn firewall(&self, part: &str, args: &[&str]) -> anyhow::Result<()> {
        run(&mut self.iptables(part, args)).map(drop)
    }

    fn iptables(&self, part: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(part), "iptables", "-w"])
            .args(args);
        command
    }
}

/// `command` run inside the network namespace `namespace`, if it names one (`ip netns exec`,
/// which then runs the program itself: its pid is the program's).
pub fn enter(namespace: Option<&str>, command: Command) -> Command {
    let Some(namespace) = namespace else {
        return command;
    };
    let mut inside = Command::new("ip");
    inside
        .args(["netns", "exec", namespace])
        .arg(command.get_program())
        .args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        inside.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => inside.env(key, value),
            None => inside.env_remove(key),
        };
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_has_an_address_of_its_own_and_unknown_parts_none() {
        let network = Network::local();
        let address = |part: &str| network.address(part).map(|a| a.to_string()).ok();
        assert_eq!(address("postgres").as_deref(), Some("10.77.0.2"));
        assert_eq!(address("gateway").as_deref(), Some("10.77.0.3"));
        assert_eq!(address("kafka").as_deref(), Some("10.77.0.10"));
        assert_eq!(address("kafka-3").as_deref(), Some("10.77.0.13"));
        assert_eq!(address("order-1").as_deref(), Some("10.77.0.21"));
        assert_eq!(address("deadline-2").as_deref(), Some("10.77.0.52"));
        for unknown in ["billing-1", "order", "order-0", "order-10", "gateway-1"] {
            assert_eq!(address(unknown), None, "{unknown}");
        }
        assert_eq!(network.gateway_address().to_string(), "10.77.0.1");
    }
}
