//! The calls skiff makes to systemd's manager object, over the D-Bus
//! client of `crate::dbus`: start a transient unit and wait for its job,
//! stop one, reset a failed one, set properties.

use std::path::Path;
use std::time::{Duration, Instant};

use super::properties::{to_array, Property};
use crate::dbus::{self, Address, Connection, DbusError, Kind, Message, Value};

const DESTINATION: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// How long skiff waits for systemd to answer a call or finish a job
/// (runc waits 30 s too).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The D-Bus error systemd answers for a unit name in use.
pub const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
/// ... and for a unit it does not know.
pub const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// A connection to systemd.
pub struct Client {
    conn: Connection,
}

/// Where systemd's own private socket is (root only): a direct
/// connection to PID 1, no bus daemon in between.
const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// True when the host runs systemd as its init (what `sd_booted` checks).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

impl Client {
    /// Connects to the system instance of systemd: its private socket
    /// when skiff is root (one hop; systemctl does the same), the system
    /// bus otherwise or when that socket refuses.
    pub fn system() -> Result<Client, DbusError> {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        if uid == 0 && Path::new(PRIVATE_SOCKET).exists() {
            if let Ok(c) = Client::direct(&Address::Path(PRIVATE_SOCKET.into()), 0) {
                return Ok(c);
            }
        }
        Client::via_bus(&Address::system()?, uid)
    }

    /// A peer-to-peer connection to systemd (no bus daemon): no Hello,
    /// and systemd sends its signals to every such peer unasked.
    pub fn direct(address: &Address, uid: u32) -> Result<Client, DbusError> {
        Ok(Client {
            conn: Connection::open(address, uid)?,
        })
    }

    /// A connection through a bus daemon (`uid`: the caller's, whose
    /// bus this is; a user bus will take a rootless user's). `Hello` and
    /// the match for job signals go out without waiting: the daemon
    /// handles a connection's messages in order, so the match is in
    /// place before any job of ours can end.
    pub fn via_bus(address: &Address, uid: u32) -> Result<Client, DbusError> {
        let mut conn = Connection::open(address, uid)?;
        conn.send(dbus::hello())?;
        conn.send(dbus::add_match(&format!(
            "type='signal',sender='{DESTINATION}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
        )))?;
        Ok(Client { conn })
    }

    fn call(&mut self, member: &str, args: Vec<Value>) -> Result<Message, DbusError> {
        let mut msg = Message::call(DESTINATION, PATH, MANAGER, member);
        msg.body = args;
        self.conn.call(msg, Instant::now() + TIMEOUT)
    }

    fn job_of(reply: &Message) -> String {
        reply
            .body
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// `StartTransientUnit(name, "replace", properties, [])`: returns the
    /// job's object path.
    pub fn start_transient_unit(
        &mut self,
        name: &str,
        props: &[Property],
    ) -> Result<String, DbusError> {
        let reply = self.call(
            "StartTransientUnit",
            vec![
                Value::Str(name.into()),
                Value::Str("replace".into()),
                to_array(props),
                Value::Array("(sa(sv))".into(), vec![]),
            ],
        )?;
        Ok(Client::job_of(&reply))
    }

    /// `StopUnit(name, "replace")`: returns the job's object path.
    pub fn stop_unit(&mut self, name: &str) -> Result<String, DbusError> {
        let reply = self.call(
            "StopUnit",
            vec![Value::Str(name.into()), Value::Str("replace".into())],
        )?;
        Ok(Client::job_of(&reply))
    }

    /// `ResetFailedUnit(name)`: a failed unit is forgotten.
    pub fn reset_failed_unit(&mut self, name: &str) -> Result<(), DbusError> {
        self.call("ResetFailedUnit", vec![Value::Str(name.into())])
            .map(drop)
    }

    /// `SetUnitProperties(name, runtime = true, properties)`.
    pub fn set_unit_properties(&mut self, name: &str, props: &[Property]) -> Result<(), DbusError> {
        self.call(
            "SetUnitProperties",
            vec![Value::Str(name.into()), Value::Bool(true), to_array(props)],
        )
        .map(drop)
    }

    /// Waits for the `JobRemoved` signal of `job`; returns its result
    /// (`done`, `failed`, `canceled`, `timeout`, `dependency`, `skipped`).
    pub fn wait_job(&mut self, job: &str) -> Result<String, DbusError> {
        let signal = self.conn.next_matching(
            &format!("the end of job {job} (JobRemoved)"),
            Instant::now() + TIMEOUT,
            |m| {
                m.kind == Kind::Signal
                    && m.interface.as_deref() == Some(MANAGER)
                    && m.member.as_deref() == Some("JobRemoved")
                    && m.body.get(1).and_then(Value::as_str) == Some(job)
            },
        )?;
        Ok(signal
            .body
            .get(3)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }
}

/// True when `e` is systemd's error `name`.
pub fn is_remote(e: &DbusError, name: &str) -> bool {
    matches!(e, DbusError::Remote { name: n, .. } if n == name)
}
