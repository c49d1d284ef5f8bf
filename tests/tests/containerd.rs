//! containerd (1.6, or 2.1 with SKIFF_ENGINES=sid) drives skiff through its
//! stock runc shim
//! (`ctr run --runtime io.containerd.runc.v2 --runc-binary skiff`). Every
//! scenario also runs with runc under the same daemon, for comparison.

use std::path::PathBuf;

use skiff_e2e::ctr::{Ctr, IMAGE};
use skiff_e2e::{check, require, Report, Workdir};

#[test]
fn containerd_runs_skiff() {
    require!("containerd", "ctr", "containerd-shim-runc-v2", "runc");
    // containerd's shim sockets and fifos, the runc shim's state root:
    // removed at the end if this test created them.
    let _outside = skiff_e2e::CreatedOutside::watch(&["/run/containerd"]);
    let work = Workdir::new("containerd");
    let archive = skiff_e2e::busybox_image(&work, IMAGE).archive;
    let daemon = skiff_e2e::engines::start_containerd(&work, None);
    let runc_shim = |runtime: &str, bin: PathBuf| {
        let root = work.join(&format!("runc-root-{runtime}"));
        let flags = ["--runtime", "io.containerd.runc.v2", "--runc-binary"];
        let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        flags.push(bin.display().to_string());
        flags.push("--runc-root".into());
        flags.push(root.display().to_string());
        (runtime.to_string(), flags)
    };
    let ctr = Ctr {
        sock: work.join("containerd.sock"),
        runtimes: vec![
            runc_shim("skiff", skiff_e2e::skiff_bin()),
            runc_shim("runc", skiff_e2e::which("runc").unwrap()),
        ],
    };
    check(&mut ctr.cmd(&["images", "import", archive.to_str().unwrap()]));
    let mut report = Report::new("containerd");
    for rt in ["skiff", "runc"] {
        skiff_e2e::ctr::scenarios(&ctr, rt, &mut report);
    }
    skiff_e2e::ctr::status_matches(&ctr, "skiff", "runc", &mut report);
    drop(ctr);
    drop(daemon);
    skiff_e2e::remove_parent_cgroup("skiff-e2e");
    report.finish();
}
