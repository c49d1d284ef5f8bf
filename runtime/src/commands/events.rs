//! `skiff events [--stats] [--interval D] ID`: resource usage as runc
//! prints it, one JSON object per line: `{"type":"stats","id":..,"data":..}`
//! once with `--stats`, otherwise every interval, plus `{"type":"oom"}` as
//! soon as the kernel reports an OOM kill. Ends when the container stops.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use crate::cgroups::oom;
use crate::cli::EventsArgs;
use crate::container::{Container, ContainerError};
use crate::error::Error;
use crate::state::{Root, Status};

#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

fn emit<T: Serialize>(kind: &str, id: &str, data: Option<T>) -> bool {
    let line = serde_json::to_string(&Event { kind, id, data }).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) ends the stream.
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

pub fn run(root: &Root, args: &EventsArgs) -> Result<i32, Error> {
    let container = Container::load(root, &args.id)?;
    if container.status() == Status::Stopped {
        return Err(ContainerError::NotRunning.into());
    }
    let cgroup = container.cgroup();
    let id = args.id.as_str();
    if args.stats {
        emit("stats", id, Some(cgroup.stats()));
        return Ok(0);
    }
    let watch = cgroup.oom_watch();
    let mut ooms = cgroup.oom_kills();
    let mut next_stats = Instant::now();
    loop {
        if container.status() == Status::Stopped {
            return Ok(0);
        }
        let now = Instant::now();
        if now >= next_stats {
            if !emit("stats", id, Some(cgroup.stats())) {
                return Ok(0);
            }
            next_stats = now + args.interval;
        }
        // Wake at the next stats tick, on a memory event, and at least
        // every second to notice the container stopping.
        let wait = next_stats
            .saturating_duration_since(Instant::now())
            .min(std::time::Duration::from_secs(1));
        let timeout = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        match &watch {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let ready = nix::poll::poll(&mut fds, timeout).unwrap_or(0);
                if ready > 0 {
                    oom::drain(fd);
                }
            }
            None => std::thread::sleep(wait),
        }
        let now_ooms = cgroup.oom_kills();
        if now_ooms > ooms {
            ooms = now_ooms;
            if !emit::<()>("oom", id, None) {
                return Ok(0);
            }
        }
    }
}
