//! Finds DPDK with pkg-config, generates bindings with bindgen, and compiles C wrappers
//! for DPDK's `static inline` fast-path functions (bindgen's wrap-static-fns) plus a
//! small hand-written shim for what bindgen cannot reach (thread-local `rte_errno`).

use std::env;
use std::path::PathBuf;

fn main() {
    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!(
                "DPDK not found with pkg-config ({e}). Install it with \
                 `apt-get install libdpdk-dev dpdk libclang-dev pkg-config` or run scripts/setup.sh"
            )
        });
    // Libraries outside `pkg-config --libs libdpdk` that we call directly.
    for lib in ["rte_net_ring", "rte_net_bond"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }

    // The same flags for bindgen and for the C compiler: -include rte_config.h and -march
    // matter for the inline functions.
    let mut cflags: Vec<String> = Vec::new();
    for p in &dpdk.include_paths {
        cflags.push(format!("-I{}", p.display()));
    }
    let raw = std::process::Command::new("pkg-config")
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .expect("pkg-config runs");
    let other = String::from_utf8_lossy(&raw.stdout).to_string();
    let mut it = other.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                cflags.push("-include".into());
                cflags.push(h.into());
            }
        } else if f.starts_with("-march") || f.starts_with("-m") || f.starts_with("-D") {
            cflags.push(f.into());
        }
    }

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrap_c = out.join("dpdk_static_fns");

    let bindings = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_(eal|eth|pktmbuf|mempool|lcore|thread|dev|ring|mbuf|socket|strerror|delay|flow|vdev|exit|log)_.*|rte_(rdtsc|rdtsc_precise|get_tsc_hz|get_timer_cycles|get_timer_hz|strerror|lcore_id)")
        .allowlist_function("rte_(pktmbuf|eth)_.*")
        .allowlist_function("vs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("port_params")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_gtp_psc_type0_hdr")
        .opaque_type("rte_gtp_psc_type1_hdr")
        .blocklist_type("max_align_t")
        .derive_default(true)
        .layout_tests(false)
        .prepend_enum_name(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_c)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed to generate DPDK bindings");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings");

    let mut build = cc::Build::new();
    build
        .file(wrap_c.with_extension("c"))
        .file("src/shim.c")
        .include(env!("CARGO_MANIFEST_DIR"));
    for f in &cflags {
        build.flag(f);
    }
    build
        .flag("-Wno-deprecated-declarations")
        .opt_level(3)
        .compile("dpdk_shim");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
}
