//! A minimal blocking D-Bus client: one unix socket, `AUTH EXTERNAL` with
//! a uid the caller gives (the system bus and systemd's private socket
//! take root's; a user bus takes the user's), method calls with replies,
//! and signals read off the same socket. No threads, no executor: skiff
//! forks after talking to systemd, and a forking process must stay
//! single-threaded. Why this and not zbus: see README (Performance).

pub mod wire;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};

pub use wire::{Kind, Message, Value};

/// Why a D-Bus exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("D-Bus address {0:?}: no unix:path= or unix:abstract= transport")]
    Address(String),
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("{address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("{address}: authentication refused ({reply:?})")]
    Auth { address: String, reply: String },
    #[error("{address}: the peer closed the connection")]
    Closed { address: String },
    #[error("{address}: malformed message: {source}")]
    Wire {
        address: String,
        source: wire::WireError,
    },
    #[error("{address}: no answer to {what} within the time allowed")]
    Timeout { address: String, what: String },
    /// An error reply: its D-Bus error name and message.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

/// Where a bus listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    Abstract(String),
}

impl Address {
    /// The first unix transport of a D-Bus address list
    /// (`unix:path=/run/dbus/system_bus_socket;tcp:...`).
    pub fn parse(text: &str) -> Result<Address, DbusError> {
        for transport in text.split(';') {
            let Some(params) = transport.strip_prefix("unix:") else {
                continue;
            };
            for kv in params.split(',') {
                if let Some(p) = kv.strip_prefix("path=") {
                    return Ok(Address::Path(unescape(p).into()));
                }
                if let Some(a) = kv.strip_prefix("abstract=") {
                    return Ok(Address::Abstract(unescape(a)));
                }
            }
        }
        Err(DbusError::Address(text.to_string()))
    }

    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS`, or the standard socket.
    pub fn system() -> Result<Address, DbusError> {
        match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
            Ok(a) if !a.is_empty() => Address::parse(&a),
            _ => Ok(Address::Path("/run/dbus/system_bus_socket".into())),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Path(p) => write!(f, "{}", p.display()),
            Address::Abstract(a) => write!(f, "@{a}"),
        }
    }
}

/// Undoes the `%xx` escapes of address values.
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(n) = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a server may take to answer `AUTH`.
const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An authenticated connection.
pub struct Connection {
    stream: UnixStream,
    address: String,
    serial: u32,
    inbuf: Vec<u8>,
    /// Messages read while waiting for another one.
    queued: VecDeque<Message>,
}

impl Connection {
    /// Connects and authenticates as `uid` with `AUTH EXTERNAL` (the
    /// kernel vouches for the uid through the socket's credentials). The
    /// `AUTH` and `BEGIN` lines go out at once, as sd-bus sends them, but
    /// the first message waits for the server's `OK`: systemd's private
    /// socket left a short first call (a `StopUnit`) that came right
    /// behind `BEGIN` unanswered until the 30 s timeout, as it would if
    /// it read both at once and only looked for messages on the next
    /// wake-up. sd-bus and godbus clients also wait for the `OK`.
    pub fn open(address: &Address, uid: u32) -> Result<Connection, DbusError> {
        let name = address.to_string();
        let connected = match address {
            Address::Path(p) => UnixStream::connect(p),
            Address::Abstract(a) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(a.as_bytes())
                    .and_then(|sa| UnixStream::connect_addr(&sa))
            }
        };
        let stream = connected.map_err(|source| DbusError::Connect {
            address: name.clone(),
            source,
        })?;
        let hex: String = uid
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut conn = Connection {
            stream,
            address: name,
            serial: 0,
            inbuf: Vec::with_capacity(4096),
            queued: VecDeque::new(),
        };
        conn.write_all(format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").as_bytes())?;
        conn.await_auth(Instant::now() + AUTH_TIMEOUT)?;
        Ok(conn)
    }

    /// Reads the server's answer to `AUTH`: `OK <guid>`, or a refusal.
    fn await_auth(&mut self, deadline: Instant) -> Result<(), DbusError> {
        loop {
            if let Some(end) = self.inbuf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
                self.inbuf.drain(..end + 2);
                if !line.starts_with("OK ") {
                    return Err(DbusError::Auth {
                        address: self.address.clone(),
                        reply: line,
                    });
                }
                return Ok(());
            }
            self.fill("authentication", deadline)?;
        }
    }

    /// The address this connection went to, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> DbusError + '_ {
        move |source| DbusError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), DbusError> {
        let r = self.stream.write_all(bytes);
        r.map_err(self.io())
    }

    /// Sends `msg` with the next serial, which it returns.
    pub fn send(&mut self, mut msg: Message) -> Result<u32, DbusError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        msg.serial = self.serial;
        let bytes = msg.encode().map_err(|source| DbusError::Wire {
            address: self.address.clone(),
            source,
        })?;
        self.write_all(&bytes)?;
        Ok(msg.serial)
    }

    /// Sends a method call and waits for its reply.
    pub fn call(&mut self, msg: Message, deadline: Instant) -> Result<Message, DbusError> {
        let what = msg.member.clone().unwrap_or_default();
        let serial = self.send(msg)?;
        self.reply(serial, &what, deadline)
    }

    /// Waits for the reply to call `serial`; an error reply is an error.
    pub fn reply(
        &mut self,
        serial: u32,
        what: &str,
        deadline: Instant,
    ) -> Result<Message, DbusError> {
        let msg = self.next_matching(what, deadline, |m| {
            matches!(m.kind, Kind::MethodReturn | Kind::Error) && m.reply_serial == Some(serial)
        })?;
        if msg.kind == Kind::Error {
            return Err(DbusError::Remote {
                name: msg.error_name.clone().unwrap_or_default(),
                message: msg
                    .body
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(msg)
    }

    /// The first message (queued or new) that `wanted` accepts; the others
    /// stay queued for later waits.
    pub fn next_matching(
        &mut self,
        what: &str,
        deadline: Instant,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> Result<Message, DbusError> {
        if let Some(i) = self.queued.iter().position(&mut wanted) {
            if let Some(m) = self.queued.remove(i) {
                return Ok(m);
            }
        }
        loop {
            let msg = self.read_message(what, deadline)?;
            if wanted(&msg) {
                return Ok(msg);
            }
            // A bus that sends many signals (systemd's private socket
            // sends every unit change) must not grow the queue without
            // bound: only replies are worth keeping.
            if msg.kind != Kind::Signal || self.queued.len() < 64 {
                self.queued.push_back(msg);
            }
        }
    }

    /// Reads the next whole message off the socket.
    fn read_message(&mut self, what: &str, deadline: Instant) -> Result<Message, DbusError> {
        loop {
            let wire = |source| DbusError::Wire {
                address: self.address.clone(),
                source,
            };
            if let Some(total) = Message::total_len(&self.inbuf).map_err(wire)? {
                if self.inbuf.len() >= total {
                    let msg = Message::decode(&self.inbuf[..total]).map_err(wire)?;
                    self.inbuf.drain(..total);
                    return Ok(msg);
                }
            }
            self.fill(what, deadline)?;
        }
    }

    /// Reads what the socket has, waiting until `deadline` for it.
    fn fill(&mut self, what: &str, deadline: Instant) -> Result<(), DbusError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) => {
                    return Err(DbusError::Timeout {
                        address: self.address.clone(),
                        what: what.to_string(),
                    })
                }
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err((self.io())(std::io::Error::from(e))),
            }
        }
        let mut chunk = [0u8; 8192];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((self.io())(e)),
            }
        };
        if n == 0 {
            return Err(DbusError::Closed {
                address: self.address.clone(),
            });
        }
        self.inbuf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// The bus daemon's own name, path and interface.
pub const BUS_NAME: &str = "org.freedesktop.DBus";
const BUS_PATH: &str = "/org/freedesktop/DBus";

/// The call every connection to a bus daemon starts with.
pub fn hello() -> Message {
    Message::call(BUS_NAME, BUS_PATH, BUS_NAME, "Hello")
}

/// Asks a bus daemon to route the signals `rule` matches to us.
pub fn add_match(rule: &str) -> Message {
    Message::call(BUS_NAME, BUS_PATH, BUS_NAME, "AddMatch").arg(Value::Str(rule.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("unix:path=/run/dbus/system_bus_socket").unwrap(),
            Address::Path("/run/dbus/system_bus_socket".into())
        );
        assert_eq!(
            Address::parse("tcp:host=x;unix:abstract=/tmp/dbus-Ab%2c1,guid=00").unwrap(),
            Address::Abstract("/tmp/dbus-Ab,1".into())
        );
        assert!(Address::parse("tcp:host=localhost,port=1").is_err());
    }
}
