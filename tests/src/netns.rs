//! Network namespaces for partition tests: each storage host (a node and its agent)
//! gets its own namespace joined to the root namespace by a veth pair, with its own
//! address; the coordinator stays in the root namespace. Partitions are nftables drop
//! rules in one table of the test's own, in the root namespace: between the
//! coordinator and a host (input/output) and between two hosts (forward, since
//! host-to-host traffic is routed through the root namespace).
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); follows the tool policy. Every
//! namespace, link and table is removed on drop. Addresses are taken from
//! 10.231.0.0/16 and the names carry the test process id, so parallel tests and
//! leftovers of a killed run never collide.

use crate::tools::{require_tool, skipped};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// One storage host's namespace.
#[derive(Debug)]
pub struct Host {
    pub ns: String,
    /// The host's address, inside its namespace.
    pub addr: String,
    /// The root namespace's end of the veth pair: how the host reaches the
    /// coordinator.
    pub gateway: String,
}

pub struct Net {
    pub hosts: Vec<Host>,
    table: String,
    forward_before: String,
}

/// Runs a command; panics with its output if it fails (setup must not half-work).
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Which block of addresses a `Net` of this process uses (one per test).
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// `hosts` namespaces, or None (skip) when the tools or root are missing.
    pub fn create(hosts: usize) -> Option<Net> {
        require_tool("ip", "iproute2")?;
        require_tool("nft", "nftables")?;
        if !nix::unistd::Uid::effective().is_root() {
            let msg = "network namespaces need root";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and {msg}");
            }
            skipped(msg);
            return None;
        }
        let pid = std::process::id() % 100_000;
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        assert!(
            block < 3 && hosts <= 3,
            "one address block holds 3 nets of 3 hosts"
        );
        let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap_or_else(|_| "0".into())
            .trim()
            .to_string();
        // Host-to-host traffic is routed through the root namespace.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enable ip_forward");
        let mut net = Net {
            hosts: Vec::new(),
            table: format!("torua_{pid}_{block}"),
            forward_before,
        };
        for i in 0..hosts {
            let ns = format!("torua{pid}b{block}h{i}");
            let (outer, inner) = (format!("tv{pid}{block}o{i}"), format!("tv{pid}{block}i{i}"));
            let subnet = format!("10.231.{}", (pid % 25) * 10 + block * 3 + i as u32);
            let (gateway, addr) = (format!("{subnet}.1"), format!("{subnet}.2"));
            sh(&["ip", "netns", "add", &ns]);
            net.hosts.push(Host {
                ns: ns.clone(),
                addr: addr.clone(),
                gateway: gateway.clone(),
            });
            sh(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            sh(&["ip", "link", "set", &inner, "netns", &ns]);
            sh(&["ip", "addr", "add", &format!("{gateway}/24"), "dev", &outer]);
            sh(&["ip", "link", "set", &outer, "up"]);
            let in_ns = |cmd: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(cmd);
                sh(&all);
            };
            in_ns(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &inner]);
            in_ns(&["ip", "link", "set", &inner, "up"]);
            in_ns(&["ip", "link", "set", "lo", "up"]);
            in_ns(&["ip", "route", "add", "default", "via", &gateway]);
        }
        sh(&["nft", "add", "table", "inet", &net.table]);
        for (chain, hook) in [
            ("from_hosts", "input"),
            ("to_hosts", "output"),
            ("between_hosts", "forward"),
        ] {
            let spec = format!("{{ type filter hook {hook} priority -10; policy accept; }}");
            sh(&["nft", "add", "chain", "inet", &net.table, chain, &spec]);
        }
        Some(net)
    }

    /// The command line that runs `args` inside host `i`'s namespace.
    pub fn exec_in(&self, i: usize) -> Vec<String> {
        ["netns", "exec", &self.hosts[i].ns]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Cuts host `i` off from the root namespace (the coordinator), both ways.
    pub fn cut_from_coordinator(&self, i: usize) {
        let a = &self.hosts[i].addr;
        self.rule("from_hosts", &format!("ip saddr {a} drop"));
        self.rule("to_hosts", &format!("ip daddr {a} drop"));
    }

    /// Drops only the coordinator's traffic to host `i`'s `port` (an asymmetric
    /// partition: the host, its agent included, still reaches the coordinator).
    pub fn cut_coordinator_to_port(&self, i: usize, port: u16) {
        let a = &self.hosts[i].addr;
        self.rule("to_hosts", &format!("ip daddr {a} tcp dport {port} drop"));
    }

    /// Drops only host `i`'s new traffic to the coordinator's `port` (its agent's
    /// heartbeats); the coordinator still reaches the host.
    pub fn cut_host_to_port(&self, i: usize, port: u16) {
        let a = &self.hosts[i].addr;
        self.rule("from_hosts", &format!("ip saddr {a} tcp dport {port} drop"));
    }

    /// Cuts hosts `i` and `j` off from each other, both ways.
    pub fn cut_between(&self, i: usize, j: usize) {
        let (a, b) = (&self.hosts[i].addr, &self.hosts[j].addr);
        self.rule("between_hosts", &format!("ip saddr {a} ip daddr {b} drop"));
        self.rule("between_hosts", &format!("ip saddr {b} ip daddr {a} drop"));
    }

    /// Removes every partition.
    pub fn heal(&self) {
        for chain in ["from_hosts", "to_hosts", "between_hosts"] {
            sh(&["nft", "flush", "chain", "inet", &self.table, chain]);
        }
    }

    fn rule(&self, chain: &str, rule: &str) {
        let mut args = vec!["nft", "add", "rule", "inet", &self.table, chain];
        args.extend(rule.split_whitespace());
        sh(&args);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0]).args(&args[1..]).output();
        };
        quiet(&["nft", "delete", "table", "inet", &self.table]);
        for h in &self.hosts {
            // Deleting the namespace deletes its veth end, and with it the pair.
            quiet(&["ip", "netns", "del", &h.ns]);
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.forward_before);
    }
}
