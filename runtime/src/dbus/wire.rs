//! The D-Bus wire format: values, their signatures, and messages, encoded
//! and decoded as the specification's marshalling section describes
//! (every value aligned to its type's size from the start of the message).
//! Only what a container runtime exchanges with systemd is here: no unix
//! fds, no dictionaries beyond what generic decoding yields.

/// One D-Bus value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    /// The element signature (so an empty array has a type) and elements.
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    /// The value's type signature.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::Double(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::ObjectPath(_) => "o".into(),
            Value::Signature(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                let inner: String = fields.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Variant(_) => "v".into(),
        }
    }

    /// The string inside a `s`, `o` or `g` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            _ => None,
        }
    }

    /// An array of strings (`as`).
    pub fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
        Value::Array(
            "s".into(),
            items.into_iter().map(|s| Value::Str(s.into())).collect(),
        )
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated at byte {0}")]
    Truncated(usize),
    #[error("invalid signature {0:?}")]
    Signature(String),
    #[error("invalid {what} at byte {at}")]
    Invalid { what: &'static str, at: usize },
    #[error("message of {0} bytes is larger than D-Bus allows")]
    TooLarge(usize),
}

/// The alignment of a type by its first signature character.
fn alignment(code: u8) -> usize {
    match code {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        _ => 8,
    }
}

/// The length of the first complete type in `sig`.
fn single_type_len(sig: &[u8]) -> Result<usize, WireError> {
    let bad = || WireError::Signature(String::from_utf8_lossy(sig).into_owned());
    match sig.first().ok_or_else(bad)? {
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g'
        | b'v' | b'h' => Ok(1),
        b'a' => Ok(1 + single_type_len(&sig[1..])?),
        open @ (b'(' | b'{') => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut i = 1;
            while sig.get(i).ok_or_else(bad)? != &close {
                i += single_type_len(&sig[i..])?;
            }
            if i == 1 {
                return Err(bad());
            }
            Ok(i + 1)
        }
        _ => Err(bad()),
    }
}

/// Splits a signature into its complete types.
pub fn split_signature(sig: &str) -> Result<Vec<&str>, WireError> {
    let mut out = Vec::new();
    let mut rest = sig;
    while !rest.is_empty() {
        let n = single_type_len(rest.as_bytes())?;
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(out)
}

/// Writes values, aligned from the start of the buffer (which is where
/// the message, or its 8-aligned body, starts).
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn signature(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// Appends one value.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I16(n) => {
                self.pad(2);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U16(n) => {
                self.pad(2);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::I32(n) => {
                self.pad(4);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::Double(d) => {
                self.pad(8);
                self.buf.extend_from_slice(&d.to_le_bytes());
            }
            Value::Str(s) | Value::ObjectPath(s) => self.string(s),
            Value::Signature(s) => self.signature(s),
            Value::Array(elem, items) => {
                self.u32(0);
                let len_at = self.buf.len() - 4;
                // The length counts the elements, not the padding before
                // the first one (which is there even when there is none).
                self.pad(alignment(elem.as_bytes().first().copied().unwrap_or(b'y')));
                let start = self.buf.len();
                for item in items {
                    self.value(item);
                }
                let len = (self.buf.len() - start) as u32;
                self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            }
            Value::Struct(fields) => {
                self.pad(8);
                for f in fields {
                    self.value(f);
                }
            }
            Value::Variant(inner) => {
                self.signature(&inner.signature());
                self.value(inner);
            }
        }
    }
}

/// Reads values of a known signature.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
    /// Where alignment is measured from.
    base: usize,
    /// Containers open around the current value (the specification
    /// allows 64; damaged input must not recurse without bound).
    depth: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8], pos: usize, big_endian: bool) -> Decoder<'a> {
        Decoder {
            buf,
            pos,
            big_endian,
            base: 0,
            depth: 0,
        }
    }

    fn align(&mut self, a: usize) -> Result<(), WireError> {
        let rel = self.pos - self.base;
        let padded = rel.div_ceil(a) * a;
        if self.base + padded > self.buf.len() {
            return Err(WireError::Truncated(self.pos));
        }
        self.pos = self.base + padded;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WireError::Truncated(self.pos))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated(self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.align(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        if self.big_endian {
            out.reverse();
        }
        Ok(out)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }

    fn text(&mut self, len: usize) -> Result<String, WireError> {
        let at = self.pos;
        let bytes = self.take(len + 1)?;
        if bytes[len] != 0 {
            return Err(WireError::Invalid {
                what: "string terminator",
                at,
            });
        }
        String::from_utf8(bytes[..len].to_vec()).map_err(|_| WireError::Invalid {
            what: "UTF-8 string",
            at,
        })
    }

    /// Reads one value of complete type `sig`.
    pub fn value(&mut self, sig: &str) -> Result<Value, WireError> {
        if self.depth > 64 {
            return Err(WireError::Invalid {
                what: "nesting depth",
                at: self.pos,
            });
        }
        self.depth += 1;
        let v = self.value_inner(sig);
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self, sig: &str) -> Result<Value, WireError> {
        let bytes = sig.as_bytes();
        Ok(match bytes.first().copied().unwrap_or(0) {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => {
                    return Err(WireError::Invalid {
                        what: "boolean",
                        at: self.pos - 4,
                    })
                }
            },
            b'n' => Value::I16(i16::from_le_bytes(self.fixed()?)),
            b'q' => Value::U16(u16::from_le_bytes(self.fixed()?)),
            b'i' => Value::I32(i32::from_le_bytes(self.fixed()?)),
            b'u' | b'h' => Value::U32(self.u32()?),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed()?)),
            b't' => Value::U64(u64::from_le_bytes(self.fixed()?)),
            b'd' => Value::Double(f64::from_le_bytes(self.fixed()?)),
            b's' => {
                let len = self.u32()? as usize;
                Value::Str(self.text(len)?)
            }
            b'o' => {
                let len = self.u32()? as usize;
                Value::ObjectPath(self.text(len)?)
            }
            b'g' => {
                let len = self.take(1)?[0] as usize;
                Value::Signature(self.text(len)?)
            }
            b'v' => {
                let len = self.take(1)?[0] as usize;
                let inner = self.text(len)?;
                if split_signature(&inner)?.len() != 1 {
                    return Err(WireError::Signature(inner));
                }
                Value::Variant(Box::new(self.value(&inner)?))
            }
            b'a' => {
                let elem = &sig[1..];
                let len = self.u32()? as usize;
                self.align(alignment(elem.as_bytes()[0]))?;
                let end = self.pos + len;
                if end > self.buf.len() {
                    return Err(WireError::Truncated(self.pos));
                }
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(elem)?);
                }
                if self.pos != end {
                    return Err(WireError::Invalid {
                        what: "array length",
                        at: end,
                    });
                }
                Value::Array(elem.to_string(), items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let inner = &sig[1..sig.len() - 1];
                let mut fields = Vec::new();
                for t in split_signature(inner)? {
                    fields.push(self.value(t)?);
                }
                Value::Struct(fields)
            }
            _ => return Err(WireError::Signature(sig.to_string())),
        })
    }
}

/// The kinds of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MethodCall = 1,
    MethodReturn = 2,
    Error = 3,
    Signal = 4,
}

/// Header field codes.
const PATH: u8 = 1;
const INTERFACE: u8 = 2;
const MEMBER: u8 = 3;
const ERROR_NAME: u8 = 4;
const REPLY_SERIAL: u8 = 5;
const DESTINATION: u8 = 6;
const SENDER: u8 = 7;
const SIGNATURE: u8 = 8;

/// The specification's limit on a whole message.
const MAX_MESSAGE: usize = 1 << 27;

/// A message: its header fields and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    pub serial: u32,
    /// Set on method calls that want no reply.
    pub no_reply: bool,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<Value>,
}

impl Message {
    /// A method call (serial 0: the connection numbers it when sending).
    pub fn call(destination: &str, path: &str, interface: &str, member: &str) -> Message {
        Message {
            kind: Kind::MethodCall,
            serial: 0,
            no_reply: false,
            path: Some(path.into()),
            interface: Some(interface.into()),
            member: Some(member.into()),
            error_name: None,
            reply_serial: None,
            destination: (!destination.is_empty()).then(|| destination.into()),
            sender: None,
            body: Vec::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, v: Value) -> Message {
        self.body.push(v);
        self
    }

    /// The body's signature.
    pub fn signature(&self) -> String {
        self.body.iter().map(Value::signature).collect()
    }

    /// The message as bytes (little-endian).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut body = Encoder::default();
        for v in &self.body {
            body.value(v);
        }
        let mut fields = Vec::new();
        let mut field = |code: u8, v: Value| {
            fields.push(Value::Struct(vec![
                Value::Byte(code),
                Value::Variant(Box::new(v)),
            ]));
        };
        if let Some(p) = &self.path {
            field(PATH, Value::ObjectPath(p.clone()));
        }
        if let Some(i) = &self.interface {
            field(INTERFACE, Value::Str(i.clone()));
        }
        if let Some(m) = &self.member {
            field(MEMBER, Value::Str(m.clone()));
        }
        if let Some(e) = &self.error_name {
            field(ERROR_NAME, Value::Str(e.clone()));
        }
        if let Some(r) = self.reply_serial {
            field(REPLY_SERIAL, Value::U32(r));
        }
        if let Some(d) = &self.destination {
            field(DESTINATION, Value::Str(d.clone()));
        }
        if let Some(s) = &self.sender {
            field(SENDER, Value::Str(s.clone()));
        }
        if !self.body.is_empty() {
            field(SIGNATURE, Value::Signature(self.signature()));
        }
        let mut out = Encoder::default();
        out.buf
            .extend_from_slice(&[b'l', self.kind as u8, u8::from(self.no_reply), 1]);
        out.u32(body.buf.len() as u32);
        out.u32(self.serial);
        out.value(&Value::Array("(yv)".into(), fields));
        out.pad(8);
        out.buf.extend_from_slice(&body.buf);
        if out.buf.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(out.buf.len()));
        }
        Ok(out.buf)
    }

    /// The length of the message at the start of `buf`, once its fixed
    /// header (16 bytes) is there.
    pub fn total_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
        if buf.len() < 16 {
            return Ok(None);
        }
        let big = match buf[0] {
            b'l' => false,
            b'B' => true,
            _ => {
                return Err(WireError::Invalid {
                    what: "endianness mark",
                    at: 0,
                })
            }
        };
        let word = |at: usize| {
            let b: [u8; 4] = buf[at..at + 4].try_into().unwrap_or_default();
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let body = word(4) as usize;
        let fields = word(12) as usize;
        let total = (16 + fields).div_ceil(8) * 8 + body;
        if total > MAX_MESSAGE {
            return Err(WireError::TooLarge(total));
        }
        Ok(Some(total))
    }

    /// Parses one whole message.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        let total = Message::total_len(buf)?.ok_or(WireError::Truncated(buf.len()))?;
        if buf.len() < total {
            return Err(WireError::Truncated(buf.len()));
        }
        let big = buf[0] == b'B';
        let kind = match buf[1] {
            1 => Kind::MethodCall,
            2 => Kind::MethodReturn,
            3 => Kind::Error,
            4 => Kind::Signal,
            _ => {
                return Err(WireError::Invalid {
                    what: "message type",
                    at: 1,
                })
            }
        };
        let mut d = Decoder::new(&buf[..total], 8, big);
        let serial = d.u32()?;
        let fields = d.value("a(yv)")?;
        let mut msg = Message {
            kind,
            serial,
            no_reply: buf[2] & 1 != 0,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            body: Vec::new(),
        };
        let mut signature = String::new();
        if let Value::Array(_, fields) = fields {
            for f in fields {
                let Value::Struct(pair) = f else { continue };
                let (Some(Value::Byte(code)), Some(Value::Variant(v))) =
                    (pair.first(), pair.get(1))
                else {
                    continue;
                };
                let text = v.as_str().map(str::to_string);
                match *code {
                    PATH => msg.path = text,
                    INTERFACE => msg.interface = text,
                    MEMBER => msg.member = text,
                    ERROR_NAME => msg.error_name = text,
                    REPLY_SERIAL => {
                        if let Value::U32(r) = **v {
                            msg.reply_serial = Some(r);
                        }
                    }
                    DESTINATION => msg.destination = text,
                    SENDER => msg.sender = text,
                    SIGNATURE => signature = text.unwrap_or_default(),
                    _ => {}
                }
            }
        }
        d.align(8)?;
        d.base = d.pos;
        for t in split_signature(&signature)? {
            msg.body.push(d.value(t)?);
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Value) {
        let sig = v.signature();
        let mut e = Encoder::default();
        e.value(&v);
        let mut d = Decoder::new(&e.buf, 0, false);
        assert_eq!(d.value(&sig).unwrap(), v, "{sig}");
        assert_eq!(d.pos, e.buf.len(), "{sig}");
    }

    #[test]
    fn values_roundtrip() {
        roundtrip(Value::Str("skiff-c1.scope".into()));
        roundtrip(Value::U64(u64::MAX));
        roundtrip(Value::Array(
            "y".into(),
            vec![Value::Byte(3), Value::Byte(1)],
        ));
        roundtrip(Value::Array("(ss)".into(), vec![]));
        roundtrip(Value::Array(
            "(sv)".into(),
            vec![
                Value::Struct(vec![
                    Value::Str("PIDs".into()),
                    Value::Variant(Box::new(Value::Array("u".into(), vec![Value::U32(42)]))),
                ]),
                Value::Struct(vec![
                    Value::Str("Delegate".into()),
                    Value::Variant(Box::new(Value::Bool(true))),
                ]),
            ],
        ));
        roundtrip(Value::Struct(vec![
            Value::Byte(1),
            Value::U64(7),
            Value::Signature("a(sv)".into()),
            Value::I16(-2),
            Value::Double(1.5),
        ]));
    }

    #[test]
    fn the_specifications_hello() {
        // dbus-send's Hello as a byte dump, which any bus daemon takes.
        let msg = Message::call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
        );
        let mut m = msg.clone();
        m.serial = 1;
        let bytes = m.encode().unwrap();
        assert_eq!(&bytes[..4], b"l\x01\x00\x01");
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(Message::total_len(&bytes).unwrap(), Some(bytes.len()));
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn an_empty_array_of_structs_keeps_its_padding() {
        let mut e = Encoder::default();
        e.value(&Value::Array("(ss)".into(), vec![]));
        // Length 0, then padding to 8 even with no element.
        assert_eq!(e.buf, [0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_big_endian_reply_decodes() {
        // A method return with REPLY_SERIAL 5 and body "o" /j/1, big-endian.
        let mut buf = vec![b'B', 2, 1, 1];
        buf.extend_from_slice(&9u32.to_be_bytes()); // body length
        buf.extend_from_slice(&9u32.to_be_bytes()); // serial
        let fields_at = buf.len();
        buf.extend_from_slice(&[0; 4]); // fields length, filled below
                                        // (y v) structs start 8-aligned: REPLY_SERIAL at 16, SIGNATURE at 24.
        buf.extend_from_slice(&[5, 1, b'u', 0]);
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&[8, 1, b'g', 0, 1, b'o', 0]);
        let len = (buf.len() - fields_at - 4) as u32;
        buf[fields_at..fields_at + 4].copy_from_slice(&len.to_be_bytes());
        while buf.len() % 8 != 0 {
            buf.push(0);
        }
        buf.extend_from_slice(&4u32.to_be_bytes());
        buf.extend_from_slice(b"/j/1\0");
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.kind, Kind::MethodReturn);
        assert_eq!(m.reply_serial, Some(5));
        assert_eq!(m.body, vec![Value::ObjectPath("/j/1".into())]);
    }

    #[test]
    fn damaged_messages_are_errors_not_panics() {
        let mut m = Message::call("d", "/p", "i.f", "M").arg(Value::strings(["a", "b"]));
        m.serial = 3;
        let bytes = m.encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0xff;
            let _ = Message::decode(&damaged);
        }
    }

    #[test]
    fn signatures_split_into_complete_types() {
        assert_eq!(
            split_signature("ssa(sv)a(sa(sv))").unwrap(),
            ["s", "s", "a(sv)", "a(sa(sv))"]
        );
        for bad in ["a", "(", "()", "(s", "z"] {
            assert!(split_signature(bad).is_err(), "{bad}");
        }
    }
}
