//! One conversation with `criu swrk FD`: CRIU's RPC service on one end of
//! a seqpacket socketpair, its child for as long as the request lasts.
//! skiff sends one request, answers each notification CRIU sends while it
//! works (and takes the fd some of them carry), and reads the final
//! response.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
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
    /// `inherit_fd`); stdio is inherited as it is.
    pub fn start(criu: &Path, inherit: &[RawFd]) -> Result<Swrk, CriuError> {
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
        let mut cmd = Command::new(criu);
        cmd.arg("swrk").arg(theirs.as_raw_fd().to_string());
        // SAFETY: the closure only calls fcntl, which is async-signal-safe,
        // on fds that are open in the parent and so in the child.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CriuError::NotFound(criu.to_path_buf())
            } else {
                CriuError::Spawn {
                    path: criu.to_path_buf(),
                    source,
                }
            }
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
        // the socket), except after a pre-dump: it then waits for the next
        // pre-dump or the dump, and would print an error on the closed
        // socket. Stopped first, it leaves a successful pre-dump silent.
        if req.kind == ReqType::PreDump {
            let _ = self.child.kill();
        }
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
    let resp = Swrk::start(criu, &[])?.call(&Req::bare(ReqType::Version), |_, _, _| Ok(()))?;
    match resp.version {
        Some(v) if resp.success && v >= MIN_VERSION => Ok(v),
        Some((a, b, c)) => Err(CriuError::TooOld(format!("{a}.{b}.{c}"))),
        None => Err(CriuError::TooOld("without a VERSION request".into())),
    }
}
