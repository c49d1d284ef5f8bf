//! `skiff update [--resources FILE|-] [flags] ID`: changes the resource
//! limits of a live container. The JSON is a `linux.resources` object;
//! flags override its fields. Only what is given is written, so limits
//! the update does not mention stay as they are.

use std::io::Read;

use oci_spec::runtime::{LinuxPids, LinuxResources};

use crate::cli::UpdateArgs;
use crate::container::{Container, ContainerError};
use crate::error::Error;
use crate::state::{Root, Status};

pub fn run(root: &Root, args: &UpdateArgs) -> Result<i32, Error> {
    let container = Container::load(root, &args.id)?;
    let mut res = match &args.resources {
        Some(path) => read_resources(path)?,
        None => LinuxResources::default(),
    };
    apply_flags(&mut res, args);
    if res.devices().is_some() {
        crate::warn!("devices: update does not change device rules (as runc)");
        res.set_devices(None);
    }
    if container.status() == Status::Stopped {
        return Err(ContainerError::NotRunning.into());
    }
    container
        .own_cgroup("update")?
        .apply(&res)
        .map_err(ContainerError::from)?;
    Ok(0)
}

fn read_resources(path: &std::path::Path) -> Result<LinuxResources, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
    } else {
        text = std::fs::read_to_string(path).map_err(io)?;
    }
    let de = &mut serde_json::Deserializer::from_slice(text.as_bytes());
    let mut res = serde_path_to_error::deserialize(de).map_err(|e| {
        Error::Message(format!(
            "{}: resources.{}: {}",
            path.display(),
            e.path(),
            e.inner()
        ))
    })?;
    crate::cgroups::resources::drop_unset_pids_limit(&mut res, text.as_bytes(), "");
    Ok(res)
}

/// Overrides the fields runc's update flags name.
fn apply_flags(res: &mut LinuxResources, a: &UpdateArgs) {
    let cpu_flags = a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
        || a.cpu_idle.is_some();
    if cpu_flags {
        let mut cpu = res.cpu().clone().unwrap_or_default();
        cpu.set_period(a.cpu_period.or(cpu.period()));
        cpu.set_quota(a.cpu_quota.or(cpu.quota()));
        cpu.set_shares(a.cpu_share.or(cpu.shares()));
        cpu.set_realtime_period(a.cpu_rt_period.or(cpu.realtime_period()));
        cpu.set_realtime_runtime(a.cpu_rt_runtime.or(cpu.realtime_runtime()));
        cpu.set_cpus(a.cpuset_cpus.clone().or(cpu.cpus().clone()));
        cpu.set_mems(a.cpuset_mems.clone().or(cpu.mems().clone()));
        cpu.set_idle(a.cpu_idle.or(cpu.idle()));
        res.set_cpu(Some(cpu));
    }
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut memory = res.memory().unwrap_or_default();
        memory.set_limit(a.memory.or(memory.limit()));
        memory.set_reservation(a.memory_reservation.or(memory.reservation()));
        memory.set_swap(a.memory_swap.or(memory.swap()));
        res.set_memory(Some(memory));
    }
    if let Some(limit) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    if let Some(weight) = a.blkio_weight {
        let mut blkio = res.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(weight));
        res.set_block_io(Some(blkio));
    }
}
