//! `vsctl`: configures and inspects a running `vswitchd` over its control socket,
//! in the family style of `ovs-vsctl` / `ovs-appctl`.
fn main() {
    eprintln!("vsctl: the control channel is not built yet (issue 7)");
    std::process::exit(2);
}
