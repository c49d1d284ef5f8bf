//! ttrpc, containerd's RPC protocol for shims, over a unix socket.
//!
//! A frame is a 10-byte header (payload length and stream id as big-endian
//! u32, a type byte, a flags byte) and a protobuf payload: a `Request`
//! (service, method, the method's message) from the client, a `Response`
//! (a status and the reply message) from the server, on the same stream
//! id. Clients number their streams with odd ids.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::api::Any;
use crate::proto::{message, Message};

const HEADER: usize = 10;
/// ttrpc's own limit on a message.
const MAX_PAYLOAD: usize = 4 << 20;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

/// gRPC status codes containerd maps back to its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown = 2,
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    FailedPrecondition = 9,
    Unimplemented = 12,
}

message! {
    pub struct KeyValue {
        1 key: String,
        2 value: String,
    }
    pub struct Request {
        1 service: String,
        2 method: String,
        3 payload: Vec<u8>,
        4 timeout_nano: i64,
        5 metadata: Vec<KeyValue>,
    }
    /// google.rpc.Status.
    pub struct Status {
        1 code: i32,
        2 message: String,
        3 details: Vec<Any>,
    }
    pub struct Response {
        1 status: Option<Status>,
        2 payload: Vec<u8>,
    }
}

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum TtrpcError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is over ttrpc's 4 MiB limit")]
    TooLong(usize),
    #[error("bad message: {0}")]
    Decode(#[from] crate::proto::DecodeError),
    #[error("{method}: code {code}: {message}")]
    Status {
        method: String,
        code: i32,
        message: String,
    },
}

/// The socket path of a ttrpc address (`unix:///path` or a bare path).
pub fn socket_path(address: &str) -> &str {
    let address = address.trim();
    address.strip_prefix("unix://").unwrap_or(address)
}

/// One frame.
pub struct Frame {
    pub stream: u32,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Reads a whole frame; None at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, TtrpcError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
    if len > MAX_PAYLOAD {
        return Err(TtrpcError::TooLong(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        stream: u32::from_be_bytes(header[4..8].try_into().unwrap()),
        kind: header[8],
        payload,
    }))
}

/// Writes a frame in one write, so frames of concurrent writers on one
/// socket never interleave.
pub fn write_frame(
    w: &mut impl Write,
    stream: u32,
    kind: u8,
    payload: &[u8],
) -> Result<(), TtrpcError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(TtrpcError::TooLong(payload.len()));
    }
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&[kind, 0]);
    frame.extend_from_slice(payload);
    w.write_all(&frame)?;
    Ok(())
}

/// A reply: the method's message, or a status code and message.
pub type Reply = Result<Vec<u8>, (Code, String)>;

/// The response frame's payload for a reply.
pub fn response(reply: Reply) -> Vec<u8> {
    match reply {
        Ok(payload) => Response {
            status: Some(Status::default()),
            payload,
        },
        Err((code, message)) => Response {
            status: Some(Status {
                code: code as i32,
                message,
                details: Vec::new(),
            }),
            payload: Vec::new(),
        },
    }
    .to_bytes()
}

/// A client on one connection, making one call at a time.
pub struct Client {
    stream: UnixStream,
    next_stream: u32,
}

impl Client {
    pub fn connect(path: &str, timeout: std::time::Duration) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client {
            stream,
            next_stream: 1,
        })
    }

    /// Calls `service/method`; returns the reply's payload.
    pub fn call(
        &mut self,
        service: &str,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, TtrpcError> {
        let id = self.next_stream;
        self.next_stream += 2;
        let req = Request {
            service: service.to_string(),
            method: method.to_string(),
            payload,
            ..Default::default()
        };
        write_frame(&mut self.stream, id, TYPE_REQUEST, &req.to_bytes())?;
        loop {
            let frame = read_frame(&mut self.stream)?.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
            })?;
            if frame.stream != id || frame.kind != TYPE_RESPONSE {
                continue;
            }
            let resp = Response::decode(&frame.payload)?;
            let status = resp.status.unwrap_or_default();
            if status.code != 0 {
                return Err(TtrpcError::Status {
                    method: method.to_string(),
                    code: status.code,
                    message: status.message,
                });
            }
            return Ok(resp.payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_oversize() {
        let mut buf = Vec::new();
        write_frame(&mut buf, 7, TYPE_RESPONSE, b"abc").unwrap();
        assert_eq!(&buf[..10], [0, 0, 0, 3, 0, 0, 0, 7, 2, 0]);
        let f = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(
            (f.stream, f.kind, &f.payload[..]),
            (7, TYPE_RESPONSE, &b"abc"[..])
        );
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
        assert!(read_frame(&mut &buf[..5]).is_err());
        let huge = [0xffu8, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0];
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(TtrpcError::TooLong(_))
        ));
    }

    #[test]
    fn error_reply_carries_code_and_message() {
        let bytes = response(Err((Code::NotFound, "task x: not found".into())));
        let resp = Response::decode(&bytes).unwrap();
        let status = resp.status.unwrap();
        assert_eq!(status.code, 5);
        assert_eq!(status.message, "task x: not found");
        let ok = Response::decode(&response(Ok(vec![8, 1]))).unwrap();
        assert_eq!(ok.payload, [8, 1]);
        assert_eq!(ok.status.unwrap().code, 0);
    }

    #[test]
    fn every_message_matches_containerd() {
        use crate::wire_fuzz::matches_containerd;
        use containerd_shim_protos::ttrpc::proto as reference;
        matches_containerd::<KeyValue, reference::KeyValue>();
        matches_containerd::<Request, reference::Request>();
        matches_containerd::<Status, reference::Status>();
        matches_containerd::<Response, reference::Response>();
    }

    /// Hands out its bytes a few at a time, with EINTR in between, as a
    /// socket may.
    struct Trickle<'a> {
        data: &'a [u8],
        chunks: std::iter::Cycle<std::vec::IntoIter<usize>>,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = self
                .chunks
                .next()
                .unwrap_or(1)
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// A frame's stream id, type and payload.
    type Parts = (u32, u8, Vec<u8>);

    /// How a stream read frame by frame ends.
    #[derive(Debug, PartialEq)]
    enum End {
        Clean,
        TooLong,
        Cut,
    }

    /// What reading `stream` frame by frame must give.
    fn expected(mut stream: &[u8]) -> (Vec<Parts>, End) {
        let mut frames = Vec::new();
        loop {
            if stream.is_empty() {
                return (frames, End::Clean);
            }
            if stream.len() < HEADER {
                return (frames, End::Cut);
            }
            let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
            if len > MAX_PAYLOAD {
                return (frames, End::TooLong);
            }
            let Some(payload) = stream.get(HEADER..HEADER + len) else {
                return (frames, End::Cut);
            };
            let id = u32::from_be_bytes(stream[4..8].try_into().unwrap());
            frames.push((id, stream[8], payload.to_vec()));
            stream = &stream[HEADER + len..];
        }
    }

    /// Frames written one after another read back whole, however the
    /// stream trickles in; a stream cut, flipped or grown anywhere (a huge
    /// length, say) reads as the frames before the damage and then one
    /// error, never a panic or a wait for bytes that are not coming; and
    /// containerd's ttrpc reads the same headers.
    #[test]
    fn framing_survives_random_streams() {
        use containerd_shim_protos::ttrpc::MessageHeader;
        use skiff_fuzzing::proptest::collection::vec;
        use skiff_fuzzing::proptest::prelude::*;

        let frame = (any::<u32>(), any::<u8>(), vec(any::<u8>(), 0..40));
        let damage = (any::<usize>(), any::<u8>(), 0..4u8);
        let strategy = (vec(frame, 0..5), vec(1..17usize, 1..6), vec(damage, 0..3));
        skiff_fuzzing::fuzz(
            "ttrpc framing",
            2000,
            strategy,
            |(frames, chunks, damage)| {
                let mut stream = Vec::new();
                for (id, kind, payload) in &frames {
                    let at = stream.len();
                    write_frame(&mut stream, *id, *kind, payload).unwrap();
                    let header = MessageHeader::from(&stream[at..at + HEADER]);
                    prop_assert_eq!(
                        (
                            header.length as usize,
                            header.stream_id,
                            header.type_,
                            header.flags
                        ),
                        (payload.len(), *id, *kind, 0)
                    );
                }
                for (at, byte, kind) in damage {
                    let at = at % (stream.len() + 1);
                    match kind {
                        0 => stream.truncate(at),
                        1 if at < stream.len() => stream[at] ^= byte,
                        2 => {
                            stream.splice(at..at, [0x7f, 0xff, 0xff, 0xff]);
                        }
                        _ => stream.insert(at, byte),
                    }
                }
                let (want, end) = expected(&stream);
                let mut r = Trickle {
                    data: &stream,
                    chunks: chunks.into_iter().cycle(),
                    interrupt: false,
                };
                for (id, kind, payload) in want {
                    let f = read_frame(&mut r).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let f = f.ok_or_else(|| TestCaseError::fail("ended early"))?;
                    prop_assert_eq!((f.stream, f.kind, f.payload), (id, kind, payload));
                }
                let got = match read_frame(&mut r) {
                    Ok(None) => End::Clean,
                    Err(TtrpcError::TooLong(_)) => End::TooLong,
                    Err(TtrpcError::Io(_)) => End::Cut,
                    Ok(Some(f)) => {
                        return Err(TestCaseError::fail(format!("extra frame {}", f.stream)))
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                };
                prop_assert_eq!(got, end);
                Ok(())
            },
        );
    }
}
