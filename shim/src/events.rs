//! Publishing task events to containerd (Events.Forward over its ttrpc
//! socket). The shim crate's publisher names each event's type through
//! protobuf reflection, which builds the descriptors of the whole event
//! schema on the heap of every shim; the type names are fixed strings, so
//! the envelope is built here without reflection.

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::protos::{Client, EventsClient};

/// A task event: its topic and the type name containerd decodes it by.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE: &'static str;
}

macro_rules! task_events {
    ($($ty:ident => $topic:literal),* $(,)?) => {
        $(impl TaskEvent for $ty {
            const TOPIC: &'static str = $topic;
            const TYPE: &'static str = concat!("containerd.events.", stringify!($ty));
        })*
    };
}

task_events! {
    TaskCreate => "/tasks/create",
    TaskStart => "/tasks/start",
    TaskExit => "/tasks/exit",
    TaskDelete => "/tasks/delete",
    TaskExecAdded => "/tasks/exec-added",
    TaskExecStarted => "/tasks/exec-started",
    TaskPaused => "/tasks/paused",
    TaskResumed => "/tasks/resumed",
    TaskOOM => "/tasks/oom",
}

/// Publishes events for one namespace.
pub struct Publisher {
    client: EventsClient,
    namespace: String,
}

impl Publisher {
    pub fn connect(address: &str, namespace: &str) -> Result<Publisher, containerd_shim::Error> {
        let fd = containerd_shim::util::connect(address)?;
        Ok(Publisher {
            client: EventsClient::new(Client::new(fd)?),
            namespace: namespace.to_string(),
        })
    }

    /// Sends one event; a failure is logged (containerd may be restarting,
    /// and the task's state stays queryable either way).
    pub fn publish<E: TaskEvent>(&self, event: E) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => return log::warn!("encode {}: {e}", E::TOPIC),
        };
        let req = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(Timestamp::now()),
                namespace: self.namespace.clone(),
                topic: E::TOPIC.to_string(),
                event: MessageField::some(Any {
                    type_url: E::TYPE.to_string(),
                    value,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = self.client.forward(context::with_timeout(0), &req) {
            log::warn!("publish {}: {e}", E::TOPIC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::MessageFull;

    #[test]
    fn type_names_are_the_message_names() {
        assert_eq!(TaskExit::TYPE, TaskExit::descriptor().full_name());
        assert_eq!(TaskOOM::TYPE, TaskOOM::descriptor().full_name());
        assert_eq!(
            TaskExecStarted::TYPE,
            TaskExecStarted::descriptor().full_name()
        );
    }
}
