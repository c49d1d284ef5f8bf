//! One conversation with `criu swrk FD`: CRIU's RPC service on one end of
//! a seqpacket socketpair, its child for as long as the request lasts.
//! skiff sends one request, answers each notification CRIU sends while it
//! works (and takes the fd some of them carry), and reads the final
//! response.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::rpc::{Req, ReqType, Resp};
use super::CriuError;

/// The oldest CRIU skiff drives: the one whose RPC answers VERSION.
pub const MIN_VERSION: (i32, i32, i32) = (3, 0, 0);

/// A running `criu swrk`.
pub struct Swrk {
    child: Child,
    sock: OwnedFd,
}

impl Swrk {
    /// Starts `criu swrk`. `inherit` are fds of ours that CRIU must see
    /// under the same numbers (image and work directories, the fds of
    /// `inherit_fd`); stdio is inherited as it is. `join` are cgroup files
    /// (`Manager::join_files`) CRIU's process writes "0" to before it
    /// execs: joining through `tasks` takes no global lock, where skiff
    /// writing CRIU's pid to each `cgroup.procs` waited 8-48 ms here for
    /// an RCU grace period on every restore.
    pub fn start(criu: &Path, inherit: &[RawFd], join: &[PathBuf]) -> Result<Swrk, CriuError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| CriuError::Sys {
            what: "criu socketpair".into(),
            source: e,
        })?;
        let mut keep: Vec<RawFd> = inherit.to_vec();
        keep.push(theirs.as_raw_fd());
        let files: Vec<CString> = join
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        let mut cmd = Command::new(criu);
        cmd.arg("swrk").arg(theirs.as_raw_fd().to_string());
        // SAFETY: the closure only calls fcntl, open, write and close,
        // which are async-signal-safe, on fds open in the parent and so in
        // the child, and on paths built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for file in &files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        // A failed join comes back as the exec's error would.
        let child = cmd.spawn().map_err(|source| match join.is_empty() {
            true if source.kind() == std::io::ErrorKind::NotFound => {
                CriuError::NotFound(criu.to_path_buf())
            }
            true => CriuError::Spawn {
                path: criu.to_path_buf(),
                what: "",
                source,
            },
            false => CriuError::Spawn {
                path: criu.to_path_buf(),
                what: " in the container's cgroup",
                source,
            },
        })?;
        Ok(Swrk { child, sock: ours })
    }

    /// The criu process's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Stops a criu that was never sent its request.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn send(&self, req: &Req) -> Result<(), CriuError> {
        crate::fdpass::send(self.sock.as_fd(), &req.encode(), None).map_err(|e| CriuError::Sys {
            what: "sending the request to criu".into(),
            source: e,
        })
    }

    fn recv(&self) -> Result<Option<(Resp, Option<OwnedFd>)>, CriuError> {
        let mut buf = vec![0u8; 64 * 1024];
        let (len, fd) =
            crate::fdpass::recv(self.sock.as_fd(), &mut buf).map_err(|e| CriuError::Sys {
                what: "reading criu's answer".into(),
                source: e,
            })?;
        if len == 0 {
            return Ok(None);
        }
        Ok(Some((Resp::decode(&buf[..len])?, fd)))
    }

    /// Sends `req` and returns the final response; `notify` sees each
    /// notification (its name, the pid it is about and the fd it carried)
    /// before CRIU is told to go on, and an error from it stops CRIU.
    pub fn call(
        mut self,
        req: &Req,
        mut notify: impl FnMut(&str, Option<i32>, Option<OwnedFd>) -> Result<(), CriuError>,
    ) -> Result<Resp, CriuError> {
        self.send(req)?;
        let outcome = loop {
            let Some((resp, fd)) = self.recv()? else {
                break Err(CriuError::Exited(self.exit_status()));
            };
            if resp.kind != ReqType::Notify as u64 {
                break Ok(resp);
            }
            let script = resp.notify_script.unwrap_or_default();
            if let Err(e) = notify(&script, resp.notify_pid, fd) {
                break Err(e);
            }
            self.send(&Req::notify_ack())?;
        };
        // CRIU ends once it has answered (or was stopped by our closing
        // the socket).
        drop(self.sock);
        let _ = self.child.wait();
        outcome
    }

    fn exit_status(&mut self) -> String {
        match self.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

/// Asks `criu` its version and refuses one older than `MIN_VERSION`.
pub fn check_version(criu: &Path) -> Result<(i32, i32, i32), CriuError> {
    let resp = Swrk::start(criu, &[], &[])?.call(&Req::bare(ReqType::Version), |_, _, _| Ok(()))?;
    match resp.version {
        Some(v) if resp.success && v >= MIN_VERSION => Ok(v),
        Some((a, b, c)) => Err(CriuError::TooOld(format!("{a}.{b}.{c}"))),
        None => Err(CriuError::TooOld("without a VERSION request".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_joins_before_it_execs() {
        let dir = std::env::temp_dir().join(format!("skiff-swrk-join-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tasks, procs) = (dir.join("tasks"), dir.join("cgroup.procs"));
        std::fs::write(&tasks, "").unwrap();
        std::fs::write(&procs, "").unwrap();
        // /bin/true stands in for criu: it exits at once, unanswered.
        let swrk =
            Swrk::start(Path::new("/bin/true"), &[], &[tasks.clone(), procs.clone()]).unwrap();
        swrk.abort();
        assert_eq!(std::fs::read_to_string(&tasks).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(&procs).unwrap(), "0");
        // A cgroup it cannot join: one line naming why, no criu left.
        let gone = dir.join("gone").join("tasks");
        let err = Swrk::start(Path::new("/bin/true"), &[], &[gone])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "starting /bin/true in the container's cgroup: No such file or directory (os error 2)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
