//! The typed channel between the runtime and the container init: a
//! SOCK_SEQPACKET socketpair, one JSON-encoded message per datagram, so a
//! message is never split or merged and a dead peer reads as end-of-file.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::fdpass;

/// From the init (or its intermediate parent) to the runtime.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ToParent {
    /// Slow path only: the namespaces the init made with unshare exist;
    /// waiting for id maps and cgroup placement.
    Ready,
    /// The real init after the extra fork a new pid namespace needs on the
    /// slow path, as a pid in the runtime's namespace.
    InitPid(libc::pid_t),
    /// Mounts are done; run prestart and createRuntime hooks now.
    RunHooks,
    /// The seccomp user-notification listener is attached (SCM_RIGHTS),
    /// for the runtime to hand to the agent at `listenerPath`.
    SeccompListener,
    /// Setup finished; waiting for `start`.
    Created,
    /// Setup failed; the message names the step and the field.
    Failed(String),
}

/// From the runtime to the init.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ToChild {
    /// Id maps written and cgroup joined; `pid` is the init as the runtime
    /// sees it (for the state hooks read).
    Proceed { pid: libc::pid_t },
    /// Runtime-namespace hooks have run.
    HooksDone,
}

/// Why a message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("socketpair: {0}")]
    Create(Errno),
    #[error("sending to the container init: {0}")]
    Send(Errno),
    #[error("receiving from the container init: {0}")]
    Recv(Errno),
    #[error("the container init exited during setup")]
    Closed,
    #[error("malformed message on the init channel: {0}")]
    Decode(serde_json::Error),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Creates both ends (close-on-exec).
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Create)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        self.send_inner(msg, None)
    }

    /// Sends one message with a file descriptor attached.
    pub fn send_with_fd<T: Serialize>(
        &self,
        msg: &T,
        fd: BorrowedFd<'_>,
    ) -> Result<(), ChannelError> {
        self.send_inner(msg, Some(fd))
    }

    fn send_inner<T: Serialize>(
        &self,
        msg: &T,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg).map_err(ChannelError::Decode)?;
        fdpass::send(self.fd.as_fd(), &bytes, fd).map_err(ChannelError::Send)
    }

    /// Receives one message; end-of-file means the peer is gone.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, ChannelError> {
        self.recv_with_fd().map(|(msg, _)| msg)
    }

    /// Like `recv_with_fd`, but gives up after `timeout` with `None`.
    pub fn recv_with_fd_within<T: DeserializeOwned>(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<(T, Option<OwnedFd>)>, ChannelError> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => Ok(None),
            Ok(_) => self.recv_with_fd().map(Some),
            Err(e) => Err(ChannelError::Recv(e)),
        }
    }

    /// Receives one message and the fd it carried, if any.
    pub fn recv_with_fd<T: DeserializeOwned>(&self) -> Result<(T, Option<OwnedFd>), ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fd) = fdpass::recv(self.fd.as_fd(), &mut buf).map_err(ChannelError::Recv)?;
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(ChannelError::Decode)?;
        Ok((msg, fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let (a, b) = pair().unwrap();
        a.send(&ToParent::Failed("mounts[0]: boom".into())).unwrap();
        a.send(&ToParent::Created).unwrap();
        assert_eq!(
            b.recv::<ToParent>().unwrap(),
            ToParent::Failed("mounts[0]: boom".into())
        );
        assert_eq!(b.recv::<ToParent>().unwrap(), ToParent::Created);
        b.send(&ToChild::Proceed { pid: 42 }).unwrap();
        assert_eq!(a.recv::<ToChild>().unwrap(), ToChild::Proceed { pid: 42 });
        drop(a);
        assert!(matches!(b.recv::<ToParent>(), Err(ChannelError::Closed)));
    }
}
