//! Passing a file descriptor over a unix socket (SCM_RIGHTS) with a data
//! payload: the pty master to a console socket, the seccomp listener to an
//! agent, fds on the init channel.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socket, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

/// Connects a stream socket (close-on-exec) to the unix socket at `path`.
pub fn connect(path: &Path) -> nix::Result<OwnedFd> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    nix::sys::socket::connect(sock.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(sock)
}

/// Sends `data`, with `fd` attached when given.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> nix::Result<()> {
    let iov = [IoSlice::new(data)];
    let fds;
    let cmsg: Vec<ControlMessage<'_>> = match fd {
        Some(fd) => {
            fds = [fd.as_raw_fd()];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => Vec::new(),
    };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one message into `buf`; returns its length and the fd it
/// carried, if any (close-on-exec).
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for (i, raw) in fds.iter().enumerate() {
                // SAFETY: the kernel installed these fds for us; we own them.
                let owned = unsafe { OwnedFd::from_raw_fd(*raw) };
                if i == 0 {
                    fd = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    #[test]
    fn data_and_fd() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send(a.as_fd(), b"/dev/pts/7", Some(file.as_fd())).unwrap();
        let mut buf = [0u8; 64];
        let (n, fd) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"/dev/pts/7");
        let st = nix::sys::stat::fstat(fd.unwrap()).unwrap();
        assert_eq!(st.st_rdev, nix::sys::stat::makedev(1, 3));
        send(a.as_fd(), b"plain", None).unwrap();
        let (n, fd) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (&b"plain"[..], true));
    }
}
