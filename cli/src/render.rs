//! Text rendering of the daemon's JSON results. The daemon only produces data
//! (`vswitch::ctl`'s shapes); everything a human reads is laid out here. Renderers
//! read fields leniently (a missing field shows as empty or 0), so a newer daemon
//! that adds fields still renders.

use std::fmt::Write as _;

use serde_json::Value;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}
fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}
fn b(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}
fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}
fn strs<'a>(v: &'a Value, k: &str) -> Vec<&'a str> {
    arr(v, k).iter().filter_map(Value::as_str).collect()
}
fn updown(x: bool) -> &'static str {
    if x {
        "up"
    } else {
        "down"
    }
}

/// A bit rate with a unit.
pub fn rate(bps: u64) -> String {
    match bps {
        0 => "0".into(),
        b if b >= 1_000_000_000 => format!("{:.2} Gb/s", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} Mb/s", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kb/s", b as f64 / 1e3),
        b => format!("{b} b/s"),
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn member_line(m: &Value) -> String {
    let mut l = format!("member {}: {}", s(m, "name"), s(m, "state"));
    if !s(m, "reason").is_empty() {
        let _ = write!(l, " ({})", s(m, "reason"));
    }
    let _ = write!(l, ", link {}", updown(b(m, "link_up")));
    speed_and_mtu(&mut l, m);
    l
}

/// Appends NIC `m`'s speed and MTU, where known, to a line about it.
fn speed_and_mtu(l: &mut String, m: &Value) {
    if u(m, "speed_mbps") > 0 {
        let _ = write!(l, ", {} Mb/s", u(m, "speed_mbps"));
    }
    if u(m, "mtu") > 0 {
        let _ = write!(l, ", mtu {}", u(m, "mtu"));
    }
}

fn policy_line(v: &Value) -> String {
    let res = match v.get("reservation_mbps").and_then(Value::as_u64) {
        Some(r) => format!("{r} Mb/s"),
        None => "-".into(),
    };
    let shaping = match v.get("shaping").filter(|x| x.is_object()) {
        Some(sh) => format!(
            "avg {} peak {} burst {} B",
            rate(u(sh, "average_bps")),
            rate(u(sh, "peak_bps")),
            u(sh, "burst_bytes")
        ),
        None => "-".into(),
    };
    format!(
        "shares {}, priority {}, reservation {res}, shaping {shaping}",
        u(v, "shares"),
        u(v, "priority")
    )
}

/// `vsctl show`.
pub fn show(t: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "vswitchd (snapshot generation {})", u(t, "generation"));
    let _ = writeln!(o, "  uplinks:");
    for up in arr(t, "uplinks") {
        if b(up, "is_bond") {
            let mut h = format!("    bond {}: mode {}", s(up, "name"), s(up, "mode"));
            if !s(up, "failback").is_empty() {
                let _ = write!(h, ", failback {}", s(up, "failback"));
            }
            if !s(up, "lacp").is_empty() {
                let _ = write!(h, ", lacp {}", s(up, "lacp"));
            }
            if b(up, "degraded") {
                h.push_str(", DEGRADED");
            }
            let _ = writeln!(o, "{h}");
            for m in arr(up, "members") {
                let mut l = member_line(m);
                let pinned = strs(m, "pinned_vnics");
                if !pinned.is_empty() {
                    let _ = write!(l, "; carries {}", pinned.join(", "));
                }
                let _ = writeln!(o, "      {l}");
            }
        } else {
            let m = arr(up, "members").first().cloned().unwrap_or(Value::Null);
            let mut l = format!(
                "    nic {} (unbonded): link {}",
                s(up, "name"),
                updown(b(&m, "link_up"))
            );
            speed_and_mtu(&mut l, &m);
            let _ = writeln!(o, "{l}");
        }
        let vnics = strs(up, "vnics");
        let _ = writeln!(
            o,
            "      vnics: {}",
            if vnics.is_empty() {
                "(none)".into()
            } else {
                vnics.join(", ")
            }
        );
    }
    let _ = writeln!(o, "  vms:");
    for vm in arr(t, "vms") {
        let _ = writeln!(
            o,
            "    vm {}: priority {}, shares {}",
            s(vm, "name"),
            u(vm, "priority"),
            u(vm, "shares")
        );
        if let Some(a) = vm.get("actions").filter(|a| a.is_object()) {
            let last = s(a, "last_action");
            let _ = writeln!(
                o,
                "      state {}{}, actions: {} suspend, {} resume, {} migrate, {} alert, {} failed{}",
                s(a, "state"),
                match a.get("reasons").and_then(Value::as_array) {
                    Some(r) if !r.is_empty() => format!(" ({})", r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")),
                    _ => String::new(),
                },
                u(a, "suspends"),
                u(a, "resumes"),
                u(a, "migrations"),
                u(a, "alerts"),
                u(a, "failures"),
                if last.is_empty() { String::new() } else { format!("; last: {last}") }
            );
            let dos = s(a, "dos");
            if !dos.is_empty() || u(a, "attacks") > 0 {
                let _ = writeln!(
                    o,
                    "      dos: {}, {} attacks so far",
                    if dos.is_empty() {
                        "no attack".to_string()
                    } else {
                        format!("under attack: {dos}")
                    },
                    u(a, "attacks")
                );
            }
        }
        for v in arr(vm, "vnics") {
            let mtu = match v.get("mtu").and_then(Value::as_u64) {
                Some(m) => format!(", mtu {m}"),
                None => String::new(),
            };
            let _ = writeln!(
                o,
                "      vnic {}: mac {}, {}, link {}{mtu}",
                s(v, "name"),
                s(v, "mac"),
                s(v, "backend"),
                updown(b(v, "link_up"))
            );
            let on = match v.get("member").and_then(Value::as_str) {
                Some(m) => format!(" (on {m})"),
                None => String::new(),
            };
            let _ = writeln!(
                o,
                "        uplink {}{on}, {}",
                s(v, "uplink"),
                policy_line(v)
            );
        }
    }
    o
}

/// `vsctl bond/show`, in the layout of `ovs-appctl bond/show`.
pub fn bond_show(bonds: &Value) -> String {
    let mut o = String::new();
    for (i, bd) in list(bonds).iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        let _ = writeln!(o, "---- {} ----", s(bd, "name"));
        let _ = writeln!(o, "bond_mode: {}", s(bd, "mode"));
        let _ = writeln!(o, "failback: {}", s(bd, "failback"));
        let _ = writeln!(o, "lacp_status: {}", s(bd, "lacp"));
        let _ = writeln!(
            o,
            "active member: {}",
            bd.get("active_member")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
        );
        let _ = writeln!(
            o,
            "degraded: {}",
            if b(bd, "degraded") { "yes" } else { "no" }
        );
        for m in arr(bd, "members") {
            let _ = writeln!(o, "\n{}", member_line(m));
            let _ = writeln!(o, "  usable: {}", if b(m, "usable") { "yes" } else { "no" });
            let _ = writeln!(
                o,
                "  tx: {} packets, {} bytes",
                u(m, "tx_pkts"),
                u(m, "tx_bytes")
            );
            let _ = writeln!(
                o,
                "  rx: {} packets, {} bytes",
                u(m, "rx_pkts"),
                u(m, "rx_bytes")
            );
            let pinned = strs(m, "pinned_vnics");
            if !pinned.is_empty() {
                let _ = writeln!(o, "  vnics: {}", pinned.join(", "));
            }
        }
    }
    if o.is_empty() {
        o.push_str("no bonds\n");
    }
    o
}

/// `vsctl lacp/show`: the daemon's own rendering of each bond.
pub fn lacp_show(bonds: &Value) -> String {
    let mut o = String::new();
    for bd in list(bonds) {
        let text = s(bd, "text");
        if text.is_empty() {
            let _ = writeln!(
                o,
                "---- {} ----\n  lacp: {}, negotiated: {}",
                s(bd, "bond"),
                s(bd, "lacp"),
                b(bd, "negotiated")
            );
            for m in arr(bd, "members") {
                let _ = writeln!(
                    o,
                    "  member {}: {} (enabled: {})",
                    s(m, "name"),
                    s(m, "mux"),
                    b(m, "may_enable")
                );
            }
        } else {
            o.push_str(text);
            if !text.ends_with('\n') {
                o.push('\n');
            }
        }
    }
    if o.is_empty() {
        o.push_str("no bonds run LACP\n");
    }
    o
}

/// `vsctl stats`.
pub fn stats(st: &Value) -> String {
    let ports = arr(st, "ports");
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let drops: u64 = p
                .get("drops")
                .and_then(Value::as_object)
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            vec![
                s(p, "name").to_string(),
                s(p, "kind").to_string(),
                p.get("uplink")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string(),
                updown(b(p, "link_up")).to_string(),
                u(p, "rx_pkts").to_string(),
                u(p, "rx_bytes").to_string(),
                u(p, "tx_pkts").to_string(),
                u(p, "tx_bytes").to_string(),
                drops.to_string(),
            ]
        })
        .collect();
    let mut o = table(
        &[
            "PORT", "KIND", "UPLINK", "LINK", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
        ],
        &rows,
    );
    let mut drops = String::new();
    for p in ports {
        let Some(m) = p.get("drops").and_then(Value::as_object) else {
            continue;
        };
        let nz: Vec<String> = m
            .iter()
            .filter_map(|(k, v)| v.as_u64().filter(|&n| n > 0).map(|n| format!("{k}={n}")))
            .collect();
        if !nz.is_empty() {
            let _ = writeln!(drops, "  {}: {}", s(p, "name"), nz.join(" "));
        }
    }
    if !drops.is_empty() {
        o.push_str("\ndrops by reason:\n");
        o.push_str(&drops);
    }
    o
}

/// A worker's first line in `pmd-stats-show` and `pmd-rxq-show`.
fn pmd_header(o: &mut String, p: &Value) {
    let _ = writeln!(
        o,
        "pmd thread worker {} core {}:",
        u(p, "worker"),
        u(p, "core")
    );
}

/// `vsctl pmd-stats-show`, in the layout of `ovs-appctl dpif-netdev/pmd-stats-show`.
pub fn pmd_stats(pmds: &Value) -> String {
    let mut o = String::new();
    for p in list(pmds) {
        pmd_header(&mut o, p);
        let _ = writeln!(
            o,
            "  iterations: {} (busy {})",
            u(p, "iterations"),
            u(p, "busy_iterations")
        );
        let _ = writeln!(o, "  packets received: {}", u(p, "rx_pkts"));
        let _ = writeln!(o, "  busy cycles: {:.1} %", f(p, "busy_pct"));
        let _ = writeln!(o, "  avg cycles per packet: {:.1}", f(p, "cycles_per_pkt"));
        let max = u(p, "sleep_max_us");
        if max > 0 || u(p, "sleep_iterations") > 0 {
            let _ = writeln!(
                o,
                "  sleep iterations: {} ({:.1} % of cycles asleep, {:.1} us/iteration avg., max {} us)",
                u(p, "sleep_iterations"),
                f(p, "sleep_pct"),
                f(p, "sleep_us_per_iteration"),
                max
            );
        }
    }
    o
}

/// `vsctl pmd-rxq-show`, in the layout of `ovs-appctl dpif-netdev/pmd-rxq-show`; the
/// share is of the worker's received frames (Open vSwitch shows cycles).
pub fn pmd_rxq(pmds: &Value) -> String {
    let mut o = String::new();
    for p in list(pmds) {
        pmd_header(&mut o, p);
        let ports = arr(p, "ports");
        if ports.is_empty() {
            let _ = writeln!(o, "  (no rx queues)");
        }
        let width = ports.iter().map(|q| s(q, "port").len()).max().unwrap_or(0);
        for q in ports {
            let queues: Vec<String> = arr(q, "queues")
                .iter()
                .filter_map(Value::as_u64)
                .map(|n| n.to_string())
                .collect();
            let _ = writeln!(
                o,
                "  port: {:<width$}  {:<4}  queue-id: {:>3}  rx: {:>12} frames  ({:5.1} % of the worker's)",
                s(q, "port"),
                s(q, "kind"),
                queues.join(","),
                u(q, "rx_pkts"),
                f(q, "rx_share_pct"),
            );
        }
    }
    o
}

/// `vsctl vnic/bandwidth`.
pub fn vnic_bandwidth(vnics: &Value) -> String {
    let rows: Vec<Vec<String>> = list(vnics)
        .iter()
        .map(|v| {
            vec![
                s(v, "name").to_string(),
                s(v, "vm").to_string(),
                s(v, "uplink").to_string(),
                u(v, "shares").to_string(),
                u(v, "priority").to_string(),
                v.get("reservation_mbps")
                    .and_then(Value::as_u64)
                    .map_or("-".into(), |r| format!("{r} Mb/s")),
                v.get("shaping")
                    .filter(|x| x.is_object())
                    .map_or("-".into(), |sh| {
                        format!("{}/{}", rate(u(sh, "average_bps")), rate(u(sh, "peak_bps")))
                    }),
                rate(u(v, "entitled_bps")),
                rate(u(v, "used_bps")),
                if s(v, "limit").is_empty() {
                    "-".into()
                } else {
                    s(v, "limit").to_string()
                },
            ]
        })
        .collect();
    table(
        &[
            "VNIC",
            "VM",
            "UPLINK",
            "SHARES",
            "PRIO",
            "RESERVED",
            "SHAPING(AVG/PEAK)",
            "ENTITLED",
            "USED",
            "LIMIT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_and_tables() {
        assert_eq!(rate(0), "0");
        assert_eq!(rate(999), "999 b/s");
        assert_eq!(rate(1_500_000), "1.5 Mb/s");
        assert_eq!(rate(20_000_000_000), "20.00 Gb/s");
        let t = table(&["A", "LONGER"], &[vec!["xxxx".into(), "1".into()]]);
        assert_eq!(t, "A     LONGER\nxxxx  1\n");
    }

    #[test]
    fn pmd_rxq_lists_each_workers_queues_in_the_ovs_layout() {
        let v = json!([
            {"worker": 0, "core": 1, "ports": [
                {"port": "nic0", "kind": "nic", "queues": [0], "rx_pkts": 750, "rx_share_pct": 75.0},
                {"port": "vm1.0", "kind": "vnic", "queues": [0], "rx_pkts": 250, "rx_share_pct": 25.0}
            ]},
            {"worker": 1, "core": 2, "ports": []}
        ]);
        let out = pmd_rxq(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "pmd thread worker 0 core 1:");
        assert!(
            lines[1].starts_with("  port: nic0   nic   queue-id:   0  rx:          750 frames")
                && lines[1].ends_with("( 75.0 % of the worker's)"),
            "{out}"
        );
        assert!(
            lines[2].contains("vm1.0") && lines[2].contains("25.0 %"),
            "{out}"
        );
        assert_eq!(lines[3], "pmd thread worker 1 core 2:");
        assert_eq!(lines[4], "  (no rx queues)");
    }

    #[test]
    fn renderers_tolerate_missing_and_odd_fields() {
        for v in [
            json!(null),
            json!({}),
            json!([]),
            json!([{}]),
            json!({"uplinks": [{}], "vms": [{"vnics": [{}]}]}),
        ] {
            let _ = (
                show(&v),
                bond_show(&v),
                lacp_show(&v),
                stats(&v),
                pmd_stats(&v),
                pmd_rxq(&v),
                vnic_bandwidth(&v),
            );
        }
        assert_eq!(bond_show(&json!([])), "no bonds\n");
    }

    #[test]
    fn stats_lists_nonzero_drops_by_reason() {
        let st = json!({"ports": [{"name": "p0", "kind": "nic", "link_up": true, "rx_pkts": 5, "drops": {"runt": 0, "tx_full": 3}}]});
        let t = stats(&st);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("p0    nic   -       up"),
            "{t}"
        );
        assert!(t.contains("drops by reason:\n  p0: tx_full=3\n"), "{t}");
    }
}
