//! The local stack's HTTP ports, as the scripts start it: read from `scripts/lib/ports`, the
//! one table the scripts read too; and free ports, for a test's own stack.

/// The table, as written in `scripts/lib/ports`.
const TABLE: &str = include_str!("../../scripts/lib/ports");

/// Every service of the table and the gateway, with the port of its first instance, in the
/// table's order.
pub fn base_ports() -> impl Iterator<Item = (&'static str, u16)> {
    TABLE
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, port) = line.split_once(char::is_whitespace)?;
            Some((name, port.trim().parse().ok()?))
        })
}

/// The HTTP port of instance `number` (from 1) of a service or the gateway: the service's port
/// + 10 × (number − 1).
pub fn port(service: &str, number: u32) -> Option<u16> {
    let (_, base) = base_ports().find(|(name, _)| *name == service)?;
    base.checked_add(10 * u16::try_from(number).ok()?.checked_sub(1)?)
}

/// The gateway's address on the local stack.
pub fn gateway_url() -> String {
    format!("http://127.0.0.1:{}", port("gateway", 1).unwrap_or(8088))
}

/// A local port that is free now and not among `taken`. A port just released is handed out
/// again, so ports of one stack must be told apart here: a stopped service keeps its port for
/// its restart, and two services given the same port would answer for each other.
pub fn free_port(taken: &[u16]) -> std::io::Result<u16> {
    // Listeners whose port was taken stay open, so the next bind gets another port.
    let mut held = Vec::new();
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
        held.push(listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_four_services_and_the_gateway() {
        let names: Vec<&str> = base_ports().map(|(name, _)| name).collect();
        assert_eq!(names, ["order", "exchange", "point", "deadline", "gateway"]);
    }

    #[test]
    fn instances_listen_ten_ports_apart_from_their_services_port() {
        assert_eq!(port("order", 1), Some(8081));
        assert_eq!(port("deadline", 2), Some(8094));
        assert_eq!(port("gateway", 1), Some(8088));
        assert_eq!(gateway_url(), "http://127.0.0.1:8088");
        assert_eq!(port("order", 0), None);
        assert_eq!(port("billing", 1), None);
    }
}
