//! Publishing task events to containerd: Events.Forward over containerd's
//! ttrpc socket (TTRPC_ADDRESS), one call at a time from the shim's one
//! serving thread. The connection is made when first needed and made again
//! after a failure. containerd restarts while shims live on: events it
//! could not take wait in a queue, in order, and are sent again after a
//! growing pause (so that a containerd that is down or hung costs the
//! serving loop one attempt per pause, not one per event).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::api::{
    Any, Envelope, ForwardRequest, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted,
    TaskExit, TaskIdOnly, TaskStart, Timestamp,
};
use crate::proto::Message;
use crate::ttrpc::{socket_path, Client};

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// containerd answers a forward at once; a stuck containerd must not stop
/// the shim from serving its tasks for long.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a failed send, doubled per failure up to the maximum.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Events kept while containerd is away; past this the oldest go.
const MAX_QUEUED: usize = 1024;

/// A task event: its topic and the type name containerd decodes it by.
pub struct Event {
    topic: &'static str,
    type_name: &'static str,
    body: Vec<u8>,
}

fn event(topic: &'static str, type_name: &'static str, m: &impl Message) -> Event {
    Event {
        topic,
        type_name,
        body: m.to_bytes(),
    }
}

impl Event {
    pub fn create(m: &TaskCreate) -> Event {
        event("/tasks/create", "containerd.events.TaskCreate", m)
    }
    pub fn start(m: &TaskStart) -> Event {
        event("/tasks/start", "containerd.events.TaskStart", m)
    }
    pub fn exit(m: &TaskExit) -> Event {
        event("/tasks/exit", "containerd.events.TaskExit", m)
    }
    pub fn delete(m: &TaskDelete) -> Event {
        event("/tasks/delete", "containerd.events.TaskDelete", m)
    }
    pub fn exec_added(m: &TaskExecAdded) -> Event {
        event("/tasks/exec-added", "containerd.events.TaskExecAdded", m)
    }
    pub fn exec_started(m: &TaskExecStarted) -> Event {
        event(
            "/tasks/exec-started",
            "containerd.events.TaskExecStarted",
            m,
        )
    }
    pub fn paused(id: &str) -> Event {
        event("/tasks/paused", "containerd.events.TaskPaused", &only(id))
    }
    pub fn resumed(id: &str) -> Event {
        event("/tasks/resumed", "containerd.events.TaskResumed", &only(id))
    }
    pub fn oom(id: &str) -> Event {
        event("/tasks/oom", "containerd.events.TaskOOM", &only(id))
    }
}

fn only(id: &str) -> TaskIdOnly {
    TaskIdOnly {
        container_id: id.to_string(),
    }
}

/// Publishes events for one namespace.
pub struct Publisher {
    address: String,
    namespace: String,
    client: Option<Client>,
    /// Forward requests containerd has not taken yet, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// When the next send may be tried after a failure.
    retry_at: Option<Instant>,
    pause: Duration,
}

impl Publisher {
    pub fn new(address: &str, namespace: &str) -> Publisher {
        Publisher {
            address: socket_path(address).to_string(),
            namespace: namespace.to_string(),
            client: None,
            queue: VecDeque::new(),
            retry_at: None,
            pause: FIRST_PAUSE,
        }
    }

    fn forward_request(&self, e: &Event) -> Vec<u8> {
        ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(Timestamp::now()),
                namespace: self.namespace.clone(),
                topic: e.topic.to_string(),
                event: Some(Any {
                    type_url: e.type_name.to_string(),
                    value: e.body.clone(),
                }),
            }),
        }
        .to_bytes()
    }

    /// Queues one event (stamped now) and sends what is queued, unless a
    /// pause after a failure is still running.
    pub fn publish(&mut self, e: Event) {
        if self.queue.len() == MAX_QUEUED {
            self.queue.pop_front();
            log::warn!("containerd unreachable: the oldest queued event is dropped");
        }
        self.queue.push_back(self.forward_request(&e));
        if self.retry_at.is_none() {
            self.flush();
        }
    }

    /// How long until a queued event is due to be sent again; None when
    /// nothing waits.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_at
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Sends the queued events in order; after a failure, pauses (the
    /// serving loop calls this again when `retry_in` runs out).
    pub fn flush(&mut self) {
        while let Some(payload) = self.queue.front() {
            if let Err(err) = self.send(payload.clone()) {
                log::warn!(
                    "publish to {}: {err}; {} event(s) queued, next try in {:?}",
                    self.address,
                    self.queue.len(),
                    self.pause
                );
                self.retry_at = Some(Instant::now() + self.pause);
                self.pause = (self.pause * 2).min(MAX_PAUSE);
                return;
            }
            self.queue.pop_front();
        }
        self.retry_at = None;
        self.pause = FIRST_PAUSE;
    }

    /// One Forward call. A kept connection may have died with a restarted
    /// containerd: one fresh attempt after a failure on an old one.
    fn send(&mut self, payload: Vec<u8>) -> Result<(), crate::ttrpc::TtrpcError> {
        let fresh = self.client.is_none();
        if fresh {
            self.client = Some(Client::connect(&self.address, TIMEOUT)?);
        }
        let client = self.client.as_mut().expect("connected above");
        match client.call(SERVICE, "Forward", payload.clone()) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.client = None;
                if fresh {
                    return Err(e);
                }
                self.send(payload)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ttrpc::{read_frame, response, write_frame, Request, TYPE_RESPONSE};
    use std::os::unix::net::UnixListener;

    #[test]
    fn envelope_carries_topic_type_and_event() {
        let p = Publisher::new("unix:///run/c.sock.ttrpc", "k8s.io");
        assert_eq!(p.address, "/run/c.sock.ttrpc");
        let bytes = p.forward_request(&Event::oom("web"));
        let env = ForwardRequest::decode(&bytes).unwrap().envelope.unwrap();
        assert_eq!(env.namespace, "k8s.io");
        assert_eq!(env.topic, "/tasks/oom");
        let any = env.event.unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskOOM");
        assert_eq!(TaskIdOnly::decode(&any.value).unwrap().container_id, "web");
        assert!(env.timestamp.unwrap().seconds > 0);
    }

    /// Accepts one connection and answers `n` forwards; returns their topics.
    fn serve(listener: UnixListener, n: usize) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut topics = Vec::new();
            for _ in 0..n {
                let frame = read_frame(&mut conn).unwrap().unwrap();
                let req = Request::decode(&frame.payload).unwrap();
                assert_eq!(
                    (req.service.as_str(), req.method.as_str()),
                    (SERVICE, "Forward")
                );
                let fwd = ForwardRequest::decode(&req.payload).unwrap();
                topics.push(fwd.envelope.unwrap().topic);
                let reply = response(Ok(Vec::new()));
                write_frame(&mut conn, frame.stream, TYPE_RESPONSE, &reply).unwrap();
            }
            topics
        })
    }

    #[test]
    fn events_wait_for_containerd_and_arrive_in_order() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("events.sock");
        let mut p = Publisher::new(sock.to_str().unwrap(), "ns");
        // containerd is away: both events wait, and a pause starts.
        p.publish(Event::paused("a"));
        assert!(p.retry_in().is_some());
        p.publish(Event::resumed("a"));
        assert_eq!(p.queue.len(), 2);
        // Back: the next flush sends both, oldest first.
        let server = serve(UnixListener::bind(&sock).unwrap(), 3);
        p.flush();
        assert!(p.queue.is_empty() && p.retry_in().is_none());
        p.publish(Event::oom("a"));
        assert_eq!(
            server.join().unwrap(),
            ["/tasks/paused", "/tasks/resumed", "/tasks/oom"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
