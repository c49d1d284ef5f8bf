//! Publishing task events to containerd: Events.Forward over containerd's
//! ttrpc socket (TTRPC_ADDRESS), one call at a time from the shim's one
//! serving thread. The connection is made when first needed and made again
//! after a failure (containerd restarts while shims live on).

use std::time::Duration;

use crate::api::{
    Any, Envelope, ForwardRequest, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted,
    TaskExit, TaskIdOnly, TaskStart, Timestamp,
};
use crate::proto::Message;
use crate::ttrpc::Client;

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// containerd answers a forward at once; a stuck containerd must not stop
/// the shim from serving its tasks for long.
const TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl Publisher {
    pub fn new(address: &str, namespace: &str) -> Publisher {
        Publisher {
            address: address
                .strip_prefix("unix://")
                .unwrap_or(address)
                .to_string(),
            namespace: namespace.to_string(),
            client: None,
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

    /// Sends one event; a failure is logged (containerd may be restarting,
    /// and the task's state stays queryable either way).
    pub fn publish(&mut self, e: Event) {
        let payload = self.forward_request(&e);
        // A kept connection may have died with a restarted containerd:
        // one fresh attempt after a failure on an old one.
        for attempt in 0..2 {
            if self.client.is_none() {
                match Client::connect(&self.address, TIMEOUT) {
                    Ok(c) => self.client = Some(c),
                    Err(err) => return log::warn!("publish {}: {}: {err}", e.topic, self.address),
                }
            }
            let client = self.client.as_mut().expect("connected above");
            match client.call(SERVICE, "Forward", payload.clone()) {
                Ok(_) => return,
                Err(err) => {
                    self.client = None;
                    if attempt == 1 {
                        log::warn!("publish {}: {err}", e.topic);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
