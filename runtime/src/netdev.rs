//! `linux.netDevices` (runtime-spec 1.3): host network interfaces moved
//! into the container's new network namespace, renamed as asked, with the
//! addresses they had on the host and up. The runtime does it from the
//! host's namespace (moving needs the host's CAP_NET_ADMIN), over
//! rtnetlink: one socket in the host's namespace, one it opens in the
//! container's.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
use oci_spec::runtime::LinuxNetDevice;

/// A device that could not be moved, and the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("linux.netDevices[{device:?}]: {step}: {source}{hint}")]
pub struct NetDeviceError {
    pub device: String,
    pub step: String,
    pub source: Errno,
    /// What the errno usually means at this step.
    pub hint: &'static str,
}

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
pub const MAX_NAME: usize = 15;

/// Why `name` cannot name an interface, if it cannot.
pub fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > MAX_NAME {
        return Some("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Some("is not a name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Some("holds '/', ':', a space or a NUL");
    }
    None
}

/// Moves every device of `devices` into `netns`, the container's network
/// namespace, in name order. The caller is single-threaded: it enters the
/// container's namespace for a moment to open a socket there. When one
/// fails, those already moved go back, with their names and addresses.
pub fn move_all(
    devices: &HashMap<String, LinuxNetDevice>,
    netns: BorrowedFd<'_>,
) -> Result<(), NetDeviceError> {
    let mut names: Vec<&String> = devices.keys().collect();
    names.sort();
    let Some(first) = names.first() else {
        return Ok(());
    };
    let own = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        .map_err(fail(first, "open the runtime's network namespace"))?;
    let mut host = Rtnl::open().map_err(fail(first, "netlink socket"))?;
    let mut inside =
        Rtnl::open_in(netns).map_err(fail(first, "netlink socket in the container"))?;
    let mut moved: Vec<Moved> = Vec::new();
    for host_name in names {
        let new_name = devices[host_name]
            .name()
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(host_name);
        if let Err(e) = move_one(
            &mut host,
            &mut inside,
            netns,
            host_name,
            new_name,
            &mut moved,
        ) {
            for m in moved.iter().rev() {
                m.bring_back(&mut host, &mut inside, own.as_fd());
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A device moved into the container, and what it had on the host.
struct Moved {
    host_name: String,
    /// Its index in the container's namespace.
    index: i32,
    renamed: bool,
    addresses: Vec<Address>,
    was_up: bool,
}

impl Moved {
    /// Best effort, after a failure: the device back in the runtime's
    /// namespace `home` as it was there.
    fn bring_back(&self, host: &mut Rtnl, inside: &mut Rtnl, home: BorrowedFd<'_>) {
        if self.renamed {
            let name = c_string(&self.host_name);
            let _ = inside.request(
                libc::RTM_NEWLINK,
                0,
                &link_message(self.index, 0, &[(IFLA_IFNAME, &name)]),
            );
        }
        let back = link_message(self.index, 0, &[(IFLA_NET_NS_FD, &netns_fd(home))]);
        if inside.request(libc::RTM_NEWLINK, 0, &back).is_err() {
            return;
        }
        let Ok((index, _)) = host.link(&self.host_name) else {
            return;
        };
        for addr in &self.addresses {
            let _ = host.request(
                libc::RTM_NEWADDR,
                (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
                &addr.message(index),
            );
        }
        if self.was_up {
            let up = libc::IFF_UP as u32;
            let _ = host.request(libc::RTM_NEWLINK, 0, &link_message(index, up, &[]));
        }
    }
}

fn fail(device: &str, step: &str) -> impl FnOnce(Errno) -> NetDeviceError {
    let device = device.to_string();
    let step = step.to_string();
    move |source| NetDeviceError {
        hint: hint(&step, source),
        device,
        step,
        source,
    }
}

/// Moves one device, renames it, gives it its addresses and brings it up;
/// once it has moved it is in `moved`, whatever comes after.
fn move_one(
    host: &mut Rtnl,
    inside: &mut Rtnl,
    netns: BorrowedFd<'_>,
    host_name: &str,
    new_name: &str,
    moved: &mut Vec<Moved>,
) -> Result<(), NetDeviceError> {
    let (index, flags) = host
        .link(host_name)
        .map_err(fail(host_name, "find the interface"))?;
    let addresses = host
        .addresses(index)
        .map_err(fail(host_name, "read its addresses"))?;
    host.request(
        libc::RTM_NEWLINK,
        0,
        &link_message(index, 0, &[(IFLA_NET_NS_FD, &netns_fd(netns))]),
    )
    .map_err(fail(
        host_name,
        "move it into the container's network namespace",
    ))?;
    let (index, _) = inside
        .link(host_name)
        .map_err(fail(host_name, "find it in the container"))?;
    moved.push(Moved {
        host_name: host_name.to_string(),
        index,
        renamed: false,
        addresses: addresses.clone(),
        was_up: flags & libc::IFF_UP as u32 != 0,
    });
    if new_name != host_name {
        inside
            .request(
                libc::RTM_NEWLINK,
                0,
                &link_message(index, 0, &[(IFLA_IFNAME, &c_string(new_name))]),
            )
            .map_err(fail(host_name, &format!("rename it to {new_name:?}")))?;
        if let Some(m) = moved.last_mut() {
            m.renamed = true;
        }
    }
    for addr in &addresses {
        inside
            .request(
                libc::RTM_NEWADDR,
                (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
                &addr.message(index),
            )
            .map_err(fail(host_name, "restore its addresses"))?;
    }
    let up = libc::IFF_UP as u32;
    inside
        .request(libc::RTM_NEWLINK, 0, &link_message(index, up, &[]))
        .map_err(fail(host_name, "bring it up"))?;
    Ok(())
}

fn hint(step: &str, source: Errno) -> &'static str {
    match (step, source) {
        ("find the interface", Errno::ENODEV) => " (no such interface on the host)",
        ("move it into the container's network namespace", Errno::EINVAL) => {
            " (this kind of interface cannot leave its namespace: a bridge or loopback, say)"
        }
        (s, Errno::EEXIST) if s.starts_with("rename") => {
            " (the container already has an interface of that name)"
        }
        _ => "",
    }
}

const IFLA_IFNAME: u16 = libc::IFLA_IFNAME;
const IFLA_NET_NS_FD: u16 = libc::IFLA_NET_NS_FD;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const IFADDRMSG: usize = 8;

fn netns_fd(netns: BorrowedFd<'_>) -> [u8; 4] {
    (netns.as_raw_fd() as u32).to_ne_bytes()
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one rtattr (type, data), padded.
fn push_attr(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&typ.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + align(len) - len, 0);
}

/// An ifinfomsg for interface `index` setting `flags` (and only those),
/// with attributes.
fn link_message(index: i32, flags: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; IFINFOMSG];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&flags.to_ne_bytes());
    for (typ, data) in attrs {
        push_attr(&mut m, *typ, data);
    }
    m
}

/// The attributes after a fixed header of `header` bytes.
fn attrs(payload: &[u8], header: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = header;
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[at], payload[at + 1]]) as usize;
        let typ = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]);
        if len < 4 || at + len > payload.len() {
            break;
        }
        out.push((typ, &payload[at + 4..at + len]));
        at += align(len);
    }
    out
}

/// One interface address, as the host had it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    /// IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST and IFA_FLAGS, as they were.
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Address {
    /// Parses an RTM_NEWADDR payload; None for an address the kernel makes
    /// itself (IPv6 link-local), which it makes again once the device is up.
    fn parse(payload: &[u8]) -> Option<(u32, Address)> {
        if payload.len() < IFADDRMSG {
            return None;
        }
        let index = u32::from_ne_bytes(payload[4..8].try_into().ok()?);
        let family = payload[0];
        let scope = payload[3];
        if family == libc::AF_INET6 as u8 && scope == libc::RT_SCOPE_LINK {
            return None;
        }
        let kept = [
            libc::IFA_ADDRESS,
            libc::IFA_LOCAL,
            libc::IFA_BROADCAST,
            libc::IFA_FLAGS,
        ];
        let attrs = attrs(payload, IFADDRMSG)
            .into_iter()
            .filter(|(t, _)| kept.contains(t))
            .map(|(t, d)| (t, d.to_vec()))
            .collect();
        Some((
            index,
            Address {
                family,
                prefix_len: payload[1],
                flags: payload[2],
                scope,
                attrs,
            },
        ))
    }

    /// The RTM_NEWADDR payload that gives interface `index` this address.
    fn message(&self, index: i32) -> Vec<u8> {
        let mut m = vec![self.family, self.prefix_len, self.flags, self.scope];
        m.extend_from_slice(&(index as u32).to_ne_bytes());
        for (typ, data) in &self.attrs {
            push_attr(&mut m, *typ, data);
        }
        m
    }
}

/// An rtnetlink socket.
struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> nix::Result<Rtnl> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Rtnl { fd, seq: 0 })
    }

    /// A socket in the network namespace `netns`: a socket belongs to the
    /// namespace it was made in, so the runtime makes it there and
    /// returns to its own.
    fn open_in(netns: BorrowedFd<'_>) -> nix::Result<Rtnl> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let sock = Rtnl::open();
        // Back home whatever happened; staying would be worse than failing.
        nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        sock
    }

    /// Sends one request and collects the payloads of its replies, up to
    /// the kernel's acknowledgement.
    fn request(&mut self, typ: u16, flags: u16, payload: &[u8]) -> nix::Result<Vec<Vec<u8>>> {
        self.send(typ, flags | libc::NLM_F_ACK as u16, payload)?;
        self.replies()
    }

    /// Sends a dump request and collects every entry, up to its end.
    fn dump(&mut self, typ: u16, payload: &[u8]) -> nix::Result<Vec<Vec<u8>>> {
        self.send(typ, libc::NLM_F_DUMP as u16, payload)?;
        self.replies()
    }

    fn send(&mut self, typ: u16, flags: u16, payload: &[u8]) -> nix::Result<()> {
        self.seq += 1;
        let flags = flags | libc::NLM_F_REQUEST as u16;
        let mut msg = Vec::with_capacity(NLMSG_HDR + payload.len());
        msg.extend_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&typ.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        nix::unistd::write(&self.fd, &msg)?;
        Ok(())
    }

    /// The payloads answering the last request, up to its acknowledgement
    /// or the end of its dump; an error the kernel sent back as the errno.
    fn replies(&mut self) -> nix::Result<Vec<Vec<u8>>> {
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = loop {
                match nix::unistd::read(self.fd.as_fd(), &mut buf) {
                    Err(Errno::EINTR) => continue,
                    other => break other?,
                }
            };
            let mut at = 0;
            while at + NLMSG_HDR <= n {
                let len =
                    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap_or_default());
                if len < NLMSG_HDR || at + len > n {
                    return Err(Errno::EBADMSG);
                }
                let body = &buf[at + NLMSG_HDR..at + len];
                at += align(len);
                if seq != self.seq {
                    continue;
                }
                match kind as i32 {
                    libc::NLMSG_DONE => return Ok(replies),
                    libc::NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .and_then(|b| b.try_into().ok())
                            .map(i32::from_ne_bytes)
                            .ok_or(Errno::EBADMSG)?;
                        if code == 0 {
                            return Ok(replies);
                        }
                        return Err(Errno::from_raw(-code));
                    }
                    _ => replies.push(body.to_vec()),
                }
            }
        }
    }

    /// The index and flags of interface `name` in this socket's namespace.
    fn link(&mut self, name: &str) -> nix::Result<(i32, u32)> {
        let replies = self.request(
            libc::RTM_GETLINK,
            0,
            &link_message(0, 0, &[(IFLA_IFNAME, &c_string(name))]),
        )?;
        let reply = replies.first().ok_or(Errno::ENODEV)?;
        let field = |at: usize| -> Option<[u8; 4]> { reply.get(at..at + 4)?.try_into().ok() };
        match (field(4), field(8)) {
            (Some(index), Some(flags)) => {
                Ok((i32::from_ne_bytes(index), u32::from_ne_bytes(flags)))
            }
            _ => Err(Errno::EBADMSG),
        }
    }

    /// The addresses of interface `index`.
    fn addresses(&mut self, index: i32) -> nix::Result<Vec<Address>> {
        let request = [libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
        let replies = self.dump(libc::RTM_GETADDR, &request)?;
        Ok(replies
            .iter()
            .filter_map(|r| Address::parse(r))
            .filter(|(i, _)| *i == index as u32)
            .map(|(_, a)| a)
            .collect())
    }
}

/// Brings up `lo` in the caller's (new) network namespace, as runc and crun
/// do: the kernel then gives it 127.0.0.1 and ::1, and programs that talk
/// to localhost work in a container without other networking.
pub fn loopback_up() -> Result<(), Errno> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Errno::last());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_takes() {
        assert_eq!(invalid_name("eth0"), None);
        assert_eq!(invalid_name("a-very-long-one"), None);
        assert_eq!(
            invalid_name("a-very-long-one!"),
            Some("is longer than 15 bytes")
        );
        assert!(invalid_name("").is_some());
        assert!(invalid_name("..").is_some());
        assert!(invalid_name("eth/0").is_some());
        assert!(invalid_name("eth 0").is_some());
        assert!(invalid_name("eth:0").is_some());
    }

    #[test]
    fn link_message_layout() {
        let m = link_message(7, libc::IFF_UP as u32, &[(IFLA_IFNAME, b"ab\0")]);
        assert_eq!(m.len(), IFINFOMSG + 8);
        assert_eq!(i32::from_ne_bytes(m[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(m[12..16].try_into().unwrap()), 1);
        assert_eq!(attrs(&m, IFINFOMSG), vec![(IFLA_IFNAME, &b"ab\0"[..])]);
    }

    #[test]
    fn addresses_round_trip_but_link_local_v6_is_left_to_the_kernel() {
        let v4 = Address {
            family: libc::AF_INET as u8,
            prefix_len: 24,
            flags: 0x80,
            scope: 0,
            attrs: vec![
                (libc::IFA_ADDRESS, vec![10, 1, 2, 3]),
                (libc::IFA_LOCAL, vec![10, 1, 2, 3]),
            ],
        };
        let mut m = v4.message(3);
        // A label is the old name's: not carried over.
        push_attr(&mut m, libc::IFA_LABEL, b"v0\0");
        assert_eq!(Address::parse(&m), Some((3, v4)));
        let link_local = [libc::AF_INET6 as u8, 64, 0, libc::RT_SCOPE_LINK, 3, 0, 0, 0];
        assert_eq!(Address::parse(&link_local), None);
    }
}
