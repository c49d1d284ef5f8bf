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
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// How long skiff waits for systemd to answer a call or finish a job
/// (runc waits 30 s too).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The D-Bus error systemd answers for a unit name in use.
pub const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
/// ... and for a unit it does not know.
pub const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// A `StartTransientUnit` sent and not answered yet.
#[must_use = "the start must be finished (finish_start)"]
pub struct Pending {
    serial: u32,
}

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

/// The ways to the system instance: the system bus, and (for root, when
/// it exists) systemd's private socket, tried second. The bus comes first
/// although it is one hop more: systemd sends every peer on its private
/// socket every signal it has (each unit's PropertiesChanged at each
/// change, every job's), and builds them in PID 1 while it runs the
/// container's unit, whereas a peer on the bus gets only the end of its
/// own jobs (the route runc and crun take too).
fn system_routes(uid: u32, private_socket: &Path) -> Result<(Address, Option<Address>), DbusError> {
    let private =
        (uid == 0 && private_socket.exists()).then(|| Address::Path(private_socket.into()));
    Ok((Address::system()?, private))
}

impl Client {
    /// Connects to the system instance of systemd by the system bus, or
    /// by its private socket when the bus cannot be reached; the bus's
    /// error when neither can.
    pub fn system() -> Result<Client, DbusError> {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        let (bus, private) = system_routes(uid, Path::new(PRIVATE_SOCKET))?;
        match (Client::via_bus(&bus, uid), private) {
            (Err(e), Some(private)) => Client::direct(&private, uid).map_err(|_| e),
            (client, _) => client,
        }
    }

    /// Connects to the systemd instance `user` names: the user instance
    /// of that uid, through its session bus (a rootless caller's units
    /// are its own instance's, as with runc), or the system's.
    pub fn connect(user: Option<u32>) -> Result<Client, DbusError> {
        match user {
            Some(uid) => Client::via_bus(&Address::session(uid)?, uid),
            None => Client::system(),
        }
    }

    /// The instance's own cgroup (its `ControlGroup` property): where a
    /// user instance's units are, `/user.slice/user-1000.slice/user@1000.service`.
    /// None when it has none (not a string, or empty).
    pub fn manager_cgroup(&mut self) -> Result<Option<String>, DbusError> {
        let mut msg = Message::call(DESTINATION, PATH, PROPERTIES, "Get");
        msg.body = vec![
            Value::Str(MANAGER.into()),
            Value::Str("ControlGroup".into()),
        ];
        let reply = self.conn.call(msg, Instant::now() + TIMEOUT)?;
        Ok(match reply.body.first() {
            Some(Value::Variant(v)) => v.as_str().filter(|s| !s.is_empty()).map(str::to_string),
            _ => None,
        })
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
        self.conn
            .call(manager_call(member, args), Instant::now() + TIMEOUT)
    }

    fn job_of(reply: &Message) -> String {
        reply
            .body
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Sends `StartTransientUnit(name, "replace", properties, [])`
    /// without waiting for the answer: the caller goes on with its own
    /// work while systemd creates the unit, and `finish_start` collects
    /// the answer and the job's end.
    pub fn send_start(&mut self, name: &str, props: &[Property]) -> Result<Pending, DbusError> {
        let msg = manager_call(
            "StartTransientUnit",
            vec![
                Value::Str(name.into()),
                Value::Str("replace".into()),
                to_array(props),
                Value::Array("(sa(sv))".into(), vec![]),
            ],
        );
        Ok(Pending {
            serial: self.conn.send(msg)?,
        })
    }

    /// Waits for the answer to `pending` and for the end of the job it
    /// queued; returns the job's result. A unit of that name that
    /// systemd still holds is reset (if it failed) and the start sent once
    /// more, as runc does; if it is still there then and `leftover`,
    /// given the unit's cgroup (none: it holds none), says it is one on
    /// its way out (an earlier container's, with no process left), it is
    /// stopped and the start sent a last time.
    pub fn finish_start(
        &mut self,
        pending: Pending,
        name: &str,
        props: &[Property],
        leftover: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<String, DbusError> {
        let deadline = Instant::now() + TIMEOUT;
        let mut answer = self
            .conn
            .reply(pending.serial, "StartTransientUnit", deadline);
        if matches!(&answer, Err(e) if is_remote(e, UNIT_EXISTS)) {
            // The reset's own error (say, the unit is active, not
            // failed) is not the one to report: the second start's is.
            let _ = self.reset_failed_unit(name);
            let again = self.send_start(name, props)?;
            answer = self
                .conn
                .reply(again.serial, "StartTransientUnit", deadline);
        }
        if matches!(&answer, Err(e) if is_remote(e, UNIT_EXISTS))
            && leftover(self.unit_cgroup(name)?.as_deref())
        {
            crate::debug!(
                "systemd: {name} of an earlier container is still ending: stopping it first"
            );
            self.stop_and_wait(name)?;
            let last = self.send_start(name, props)?;
            answer = self.conn.reply(last.serial, "StartTransientUnit", deadline);
        }
        self.wait_job(&Client::job_of(&answer?))
    }

    /// `StopUnit(name, "replace")`, and waits for the job to end. A unit
    /// systemd does not know is stopped already.
    pub fn stop_and_wait(&mut self, name: &str) -> Result<(), DbusError> {
        match self.call("StopUnit", stop_args(name)) {
            Ok(reply) => self.wait_job(&Client::job_of(&reply)).map(drop),
            Err(e) if is_remote(&e, NO_SUCH_UNIT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `StopUnit(name, "replace")` and `ResetFailedUnit(name)`
    /// together, waiting for neither; returns their serials. systemd
    /// handles them in order whether or not anyone reads the answers,
    /// also after the connection has closed.
    pub fn send_stop_and_forget(&mut self, name: &str) -> Result<(u32, u32), DbusError> {
        let stop = self.conn.send(manager_call("StopUnit", stop_args(name)))?;
        let reset = self.conn.send(manager_call(
            "ResetFailedUnit",
            vec![Value::Str(name.into())],
        ))?;
        Ok((stop, reset))
    }

    /// `send_stop_and_forget`, waiting for both answers (a unit systemd
    /// does not know is no error) but not for the stop job.
    pub fn stop_and_forget(&mut self, name: &str) -> Result<(), DbusError> {
        let (stop, reset) = self.send_stop_and_forget(name)?;
        let deadline = Instant::now() + TIMEOUT;
        for (serial, what) in [(stop, "StopUnit"), (reset, "ResetFailedUnit")] {
            match self.conn.reply(serial, what, deadline) {
                Err(e) if !is_remote(&e, NO_SUCH_UNIT) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The cgroup of unit `name` (its `ControlGroup`), none when it holds
    /// none (a unit that has ended, or is gone now).
    pub fn unit_cgroup(&mut self, name: &str) -> Result<Option<String>, DbusError> {
        let reply = match self.call("GetUnit", vec![Value::Str(name.into())]) {
            Err(e) if is_remote(&e, NO_SUCH_UNIT) => return Ok(None),
            other => other?,
        };
        let interface = if name.ends_with(".slice") {
            "org.freedesktop.systemd1.Slice"
        } else {
            "org.freedesktop.systemd1.Scope"
        };
        let get = Message::call(DESTINATION, &Client::job_of(&reply), PROPERTIES, "Get")
            .arg(Value::Str(interface.into()))
            .arg(Value::Str("ControlGroup".into()));
        let reply = self.conn.call(get, Instant::now() + TIMEOUT)?;
        let cgroup = match reply.body.first() {
            Some(Value::Variant(v)) => v.as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        Ok((!cgroup.is_empty()).then_some(cgroup))
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

/// A call to systemd's manager object.
fn manager_call(member: &str, args: Vec<Value>) -> Message {
    let mut msg = Message::call(DESTINATION, PATH, MANAGER, member);
    msg.body = args;
    msg
}

fn stop_args(name: &str) -> Vec<Value> {
    vec![Value::Str(name.into()), Value::Str("replace".into())]
}

/// True when `e` is systemd's error `name`.
pub fn is_remote(e: &DbusError, name: &str) -> bool {
    matches!(e, DbusError::Remote { name: n, .. } if n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_socket_is_roots_second_way_to_systemd() {
        let dir = std::env::temp_dir().join(format!("skiff-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("private");
        std::fs::write(&private, "").unwrap();
        let (bus, second) = system_routes(0, &private).unwrap();
        assert_eq!(bus, Address::system().unwrap());
        assert_eq!(second, Some(Address::Path(private.clone())));
        assert_eq!(system_routes(1000, &private).unwrap().1, None);
        std::fs::remove_file(&private).unwrap();
        assert_eq!(system_routes(0, &private).unwrap().1, None);
        std::fs::remove_dir(&dir).unwrap();
    }
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    /// The systemd side of a test: a socket speaking just enough D-Bus.
    struct FakeSystemd {
        stream: UnixStream,
        inbuf: Vec<u8>,
        serial: u32,
    }

    impl FakeSystemd {
        /// Accepts the client and answers its `AUTH` with `OK`.
        fn accept(listener: &UnixListener) -> FakeSystemd {
            let (stream, _) = listener.accept().unwrap();
            let mut fake = FakeSystemd {
                stream,
                inbuf: Vec::new(),
                serial: 0,
            };
            while !fake.inbuf.windows(7).any(|w| w == b"BEGIN\r\n") {
                fake.fill();
            }
            let end = fake
                .inbuf
                .windows(7)
                .position(|w| w == b"BEGIN\r\n")
                .unwrap();
            fake.inbuf.drain(..end + 7);
            fake.stream.write_all(b"OK 0123456789abcdef\r\n").unwrap();
            fake
        }

        fn fill(&mut self) {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the client hung up");
            self.inbuf.extend_from_slice(&chunk[..n]);
        }

        /// The next call; panics unless it is `member`.
        fn expect(&mut self, member: &str) -> Message {
            loop {
                if let Some(total) = Message::total_len(&self.inbuf).unwrap() {
                    if self.inbuf.len() >= total {
                        let msg = Message::decode(&self.inbuf[..total]).unwrap();
                        self.inbuf.drain(..total);
                        assert_eq!(msg.member.as_deref(), Some(member), "{msg:?}");
                        return msg;
                    }
                }
                self.fill();
            }
        }

        fn send(&mut self, kind: Kind, fill: impl FnOnce(&mut Message)) {
            self.serial += 1;
            let mut msg = Message::call("", "/", "x.y", "z");
            (msg.kind, msg.serial, msg.path, msg.interface, msg.member) =
                (kind, self.serial, None, None, None);
            fill(&mut msg);
            self.stream.write_all(&msg.encode().unwrap()).unwrap();
        }

        fn reply(&mut self, call: &Message, body: Vec<Value>) {
            self.send(Kind::MethodReturn, |m| {
                m.reply_serial = Some(call.serial);
                m.body = body;
            });
        }

        fn error(&mut self, call: &Message, name: &str) {
            self.send(Kind::Error, |m| {
                m.reply_serial = Some(call.serial);
                m.error_name = Some(name.into());
                m.body = vec![Value::Str("from the fake".into())];
            });
        }

        /// Answers a start with job `n` and ends the job with `result`,
        /// after a signal about another job.
        fn start_job(&mut self, call: &Message, n: u32, result: &str) {
            let job = format!("{PATH}/job/{n}");
            self.reply(call, vec![Value::ObjectPath(job.clone())]);
            for (id, path) in [(n + 100, format!("{PATH}/job/{}", n + 100)), (n, job)] {
                self.send(Kind::Signal, |m| {
                    m.path = Some(PATH.into());
                    m.interface = Some(MANAGER.into());
                    m.member = Some("JobRemoved".into());
                    m.body = vec![
                        Value::U32(id),
                        Value::ObjectPath(path),
                        Value::Str("c.scope".into()),
                        Value::Str(result.into()),
                    ];
                });
            }
        }
    }

    /// Runs `systemd` against a client connected to it; returns what the
    /// client's start of `c.scope` came to (`leftover`: what the client
    /// makes of the cgroup of a unit in the way).
    fn start_against(
        leftover: impl FnOnce(Option<&str>) -> bool,
        systemd: impl FnOnce(&mut FakeSystemd) + Send + 'static,
    ) -> Result<String, DbusError> {
        against(systemd, |client| {
            client
                .send_start("c.scope", &[])
                .and_then(|p| client.finish_start(p, "c.scope", &[], leftover))
        })
    }

    /// Runs `systemd` against a client connected to it, which `calls`
    /// drives; returns what `calls` returns.
    fn against<T>(
        systemd: impl FnOnce(&mut FakeSystemd) + Send + 'static,
        calls: impl FnOnce(&mut Client) -> T,
    ) -> T {
        let dir = std::env::temp_dir().join(format!(
            "skiff-fake-systemd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("private");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || systemd(&mut FakeSystemd::accept(&listener)));
        let mut client = Client::direct(&Address::Path(path), 0).unwrap();
        let result = calls(&mut client);
        // Hung up before the join: a server still waiting for a call the
        // client never made fails instead of waiting forever.
        drop(client);
        let served = server.join();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            served.is_ok(),
            "the fake systemd's script did not run through"
        );
        result
    }

    #[test]
    fn a_stop_not_waited_for_leaves_the_connection_usable() {
        // Sent without reading the answers (delete), and the connection
        // kept (the shim's): the next start reads past them, and past the
        // stop job's end, to its own answer.
        let result = against(
            |s| {
                let stop = s.expect("StopUnit");
                assert_eq!(stop.body[0], Value::Str("c.scope".into()));
                let reset = s.expect("ResetFailedUnit");
                s.start_job(&stop, 3, "done");
                s.reply(&reset, vec![]);
                let call = s.expect("StartTransientUnit");
                s.start_job(&call, 4, "done");
            },
            |client| {
                client.send_stop_and_forget("c.scope")?;
                let pending = client.send_start("c.scope", &[])?;
                client.finish_start(pending, "c.scope", &[], |_| unreachable!())
            },
        );
        assert_eq!(result.unwrap(), "done");
    }

    #[test]
    fn a_start_waits_for_its_own_job() {
        let result = start_against(
            |_| unreachable!(),
            |s| {
                let call = s.expect("StartTransientUnit");
                assert_eq!(call.body[0], Value::Str("c.scope".into()));
                s.start_job(&call, 7, "done");
            },
        );
        assert_eq!(result.unwrap(), "done");
        let result = start_against(
            |_| unreachable!(),
            |s| {
                let call = s.expect("StartTransientUnit");
                s.start_job(&call, 8, "failed");
            },
        );
        assert_eq!(result.unwrap(), "failed");
    }

    #[test]
    fn a_unit_in_the_way_is_reset_and_the_start_retried_once() {
        let result = start_against(
            |_| unreachable!(),
            |s| {
                let call = s.expect("StartTransientUnit");
                s.error(&call, UNIT_EXISTS);
                let reset = s.expect("ResetFailedUnit");
                assert_eq!(reset.body[0], Value::Str("c.scope".into()));
                s.reply(&reset, vec![]);
                let again = s.expect("StartTransientUnit");
                s.start_job(&again, 9, "done");
            },
        );
        assert_eq!(result.unwrap(), "done");
        // Still in the way after the reset, then gone by the time its
        // cgroup is asked for, and back again for the last start: that
        // refusal is the error, and there is no fourth start.
        let result = start_against(
            |cgroup| cgroup.is_none(),
            |s| {
                let call = s.expect("StartTransientUnit");
                s.error(&call, UNIT_EXISTS);
                let reset = s.expect("ResetFailedUnit");
                s.error(&reset, "org.freedesktop.systemd1.UnitNotFailed");
                let again = s.expect("StartTransientUnit");
                s.error(&again, UNIT_EXISTS);
                let get = s.expect("GetUnit");
                s.error(&get, NO_SUCH_UNIT);
                let stop = s.expect("StopUnit");
                s.error(&stop, NO_SUCH_UNIT);
                let last = s.expect("StartTransientUnit");
                s.error(&last, UNIT_EXISTS);
            },
        );
        assert!(is_remote(&result.unwrap_err(), UNIT_EXISTS));
    }

    #[test]
    fn a_unit_on_its_way_out_is_stopped_and_the_start_sent_again() {
        // Still there after the reset; `cgroup` is what it holds.
        let exists_twice = |s: &mut FakeSystemd, cgroup: &str| {
            let call = s.expect("StartTransientUnit");
            s.error(&call, UNIT_EXISTS);
            let reset = s.expect("ResetFailedUnit");
            s.reply(&reset, vec![]);
            let again = s.expect("StartTransientUnit");
            s.error(&again, UNIT_EXISTS);
            let get = s.expect("GetUnit");
            s.reply(
                &get,
                vec![Value::ObjectPath(format!("{PATH}/unit/c_2escope"))],
            );
            let props = s.expect("Get");
            assert_eq!(
                props.path.as_deref(),
                Some("/org/freedesktop/systemd1/unit/c_2escope")
            );
            assert_eq!(props.body[1], Value::Str("ControlGroup".into()));
            s.reply(
                &props,
                vec![Value::Variant(Box::new(Value::Str(cgroup.into())))],
            );
        };
        let ended = |cgroup: Option<&str>| cgroup.is_none();
        let result = start_against(ended, move |s| {
            exists_twice(s, "");
            let stop = s.expect("StopUnit");
            assert_eq!(stop.body[0], Value::Str("c.scope".into()));
            s.start_job(&stop, 10, "done");
            let last = s.expect("StartTransientUnit");
            s.start_job(&last, 11, "done");
        });
        assert_eq!(result.unwrap(), "done");
        // One that is not on its way out is not ours to stop.
        let result = start_against(ended, move |s| exists_twice(s, "/c.scope"));
        assert!(is_remote(&result.unwrap_err(), UNIT_EXISTS));
    }
}
