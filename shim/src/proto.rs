//! The protobuf wire format, as much of it as the shim's messages use.
//!
//! The shim speaks a few dozen fixed messages (the Task API, events,
//! metrics). Generated code from a general protobuf library brings
//! reflection, descriptors and generic parsers into every shim process,
//! which on a dense node is most of a shim's memory; these messages need
//! only varints and length-delimited fields. `message!` declares a struct
//! with its field numbers; each field type knows its own encoding.

/// A malformed message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated message")]
    Truncated,
    #[error("varint longer than 64 bits")]
    LongVarint,
    #[error("field number {0} out of range")]
    FieldNumber(u64),
    #[error("field {0}: unexpected wire type {1}")]
    WireType(u32, u8),
    #[error("field {0}: not UTF-8")]
    Utf8(u32),
}

/// One field's value as read off the wire. No field of the shim's
/// messages is fixed-width, so those values are only skipped.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Value<'a> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64 => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32 => 5,
        }
    }

    fn varint(self, field: u32) -> Result<u64, DecodeError> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(DecodeError::WireType(field, other.wire_type())),
        }
    }

    fn bytes(self, field: u32) -> Result<&'a [u8], DecodeError> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => Err(DecodeError::WireType(field, other.wire_type())),
        }
    }
}

/// The largest field number protobuf allows.
const MAX_FIELD: u64 = (1 << 29) - 1;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads fields off a buffer, in order.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
            self.buf = rest;
            // The tenth byte holds bit 63 alone; more would be lost.
            if i == 9 && b > 1 {
                return Err(DecodeError::LongVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::LongVarint)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value; None at the end.
    pub fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        // Numbers run from 1 to 2^29 - 1; a bigger key must not wrap onto
        // a field the message knows.
        let field = match key >> 3 {
            n @ 1..=MAX_FIELD => n as u32,
            n => return Err(DecodeError::FieldNumber(n)),
        };
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            other => return Err(DecodeError::WireType(field, other as u8)),
        };
        Ok(Some((field, value)))
    }
}

/// A message: encodes its set fields, merges fields read off the wire.
pub trait Message: Default {
    fn encode(&self, out: &mut Vec<u8>);
    fn merge_field(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError>;
    /// Number, name and value of every field, to compare with containerd's
    /// generated code.
    #[cfg(test)]
    fn fields(&self) -> Vec<(u32, String, View)>;
    /// `buf` as containerd's generated code must read it the same way (see
    /// the function `known_only`).
    #[cfg(test)]
    fn known_only(buf: &[u8]) -> Result<Vec<u8>, DecodeError>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        let mut r = Reader::new(buf);
        while let Some((field, value)) = r.field()? {
            m.merge_field(field, value)?;
        }
        Ok(m)
    }
}

/// How one field type is written and read. Scalars at their default value
/// are not written (proto3).
pub trait Field {
    fn put(&self, field: u32, out: &mut Vec<u8>);
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError>;
    #[cfg(test)]
    fn view(&self) -> View;
    /// A value of this type's field written back (see `known_only`): as
    /// it came (`raw`), unless said otherwise.
    #[cfg(test)]
    fn known(_value: Value<'_>, raw: &[u8]) -> Result<Known, DecodeError>
    where
        Self: Sized,
    {
        Ok(Known::Value(raw.to_vec()))
    }
}

/// A field's value as `known_only` writes it back.
#[cfg(test)]
pub enum Known {
    /// The value's bytes, after the key.
    Value(Vec<u8>),
    /// The content of a singular message. Go merges every occurrence of
    /// one (as protobuf says); protobuf's Rust code keeps the last, so the
    /// contents are joined into one occurrence, which both read alike.
    Merged(Vec<u8>),
}

/// `buf` rewritten for containerd's generated code to judge: each field
/// the message knows as `known` gives it, each other field with its
/// content emptied (what it holds is no business of this decoder, which
/// skips it), and every key as Go reads it (protobuf's Rust code refuses a
/// key written in more than five bytes).
#[cfg(test)]
pub fn known_only(
    buf: &[u8],
    known: impl Fn(u32, Value<'_>, &[u8]) -> Result<Option<Known>, DecodeError>,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut merged = std::collections::BTreeMap::<u32, Vec<u8>>::new();
    let mut r = Reader::new(buf);
    while !r.buf.is_empty() {
        let mut key = Reader::new(r.buf);
        let key_value = key.varint()?;
        let Some((field, value)) = r.field()? else {
            break;
        };
        let raw = &key.buf[..key.buf.len() - r.buf.len()];
        match known(field, value, raw)? {
            Some(Known::Value(bytes)) => {
                put_varint(&mut out, key_value);
                out.extend(bytes);
            }
            Some(Known::Merged(content)) => merged.entry(field).or_default().extend(content),
            None => {
                put_varint(&mut out, key_value);
                out.extend(match value {
                    Value::Varint(_) | Value::Bytes(_) => vec![0],
                    Value::Fixed64 => vec![0; 8],
                    Value::Fixed32 => vec![0; 4],
                });
            }
        }
    }
    for (field, content) in merged {
        put_bytes(&mut out, field, &content);
    }
    Ok(out)
}

/// A field's value in a form both this code and containerd's generated
/// code can be seen in (see `wire_fuzz`).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Unsigned(u64),
    Signed(i64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    Message(Vec<(u32, String, View)>),
    Absent,
    List(Vec<View>),
}

impl Field for String {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        if !self.is_empty() {
            put_bytes(out, field, self.as_bytes());
        }
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        let s = std::str::from_utf8(value.bytes(field)?).map_err(|_| DecodeError::Utf8(field))?;
        *self = s.to_string();
        Ok(())
    }
    #[cfg(test)]
    fn view(&self) -> View {
        View::Str(self.clone())
    }
}

impl Field for Vec<u8> {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        if !self.is_empty() {
            put_bytes(out, field, self);
        }
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        *self = value.bytes(field)?.to_vec();
        Ok(())
    }
    #[cfg(test)]
    fn view(&self) -> View {
        View::Bytes(self.clone())
    }
}

/// Varint scalars: the value as a u64 (negative int32/int64 values sign
/// extend to ten bytes, as protobuf writes them).
macro_rules! varint_fields {
    ($($ty:ty: $to:expr, $from:expr, $view:expr;)*) => {$(
        impl Field for $ty {
            fn put(&self, field: u32, out: &mut Vec<u8>) {
                if *self != <$ty>::default() {
                    put_key(out, field, 0);
                    put_varint(out, $to(*self));
                }
            }
            fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
                *self = $from(value.varint(field)?);
                Ok(())
            }
            #[cfg(test)]
            fn view(&self) -> View {
                $view(*self)
            }
            /// A 32-bit field as Go reads it, cut to 32 bits (protobuf's
            /// Rust code refuses a bigger value).
            #[cfg(test)]
            fn known(value: Value<'_>, raw: &[u8]) -> Result<Known, DecodeError> {
                if std::mem::size_of::<$ty>() != 4 {
                    return Ok(Known::Value(raw.to_vec()));
                }
                let mut out = Vec::new();
                put_varint(&mut out, $to($from(value.varint(0)?)));
                Ok(Known::Value(out))
            }
        }
    )*};
}

varint_fields! {
    bool: u64::from, |v| v != 0, View::Bool;
    u32: u64::from, |v| v as u32, |v| View::Unsigned(u64::from(v));
    u64: |v| v, |v| v, View::Unsigned;
    i32: |v: i32| i64::from(v) as u64, |v| v as i32, |v| View::Signed(i64::from(v));
    i64: |v: i64| v as u64, |v| v as i64, View::Signed;
}

/// repeated string.
impl Field for Vec<String> {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        for s in self {
            put_bytes(out, field, s.as_bytes());
        }
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        let mut s = String::new();
        s.merge(field, value)?;
        self.push(s);
        Ok(())
    }
    #[cfg(test)]
    fn view(&self) -> View {
        View::List(self.iter().map(Field::view).collect())
    }
}

/// repeated uint64, packed (proto3's default), read packed or not.
impl Field for Vec<u64> {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        let mut body = Vec::new();
        for v in self {
            put_varint(&mut body, *v);
        }
        put_bytes(out, field, &body);
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        match value {
            Value::Bytes(b) => {
                let mut r = Reader::new(b);
                while !r.buf.is_empty() {
                    self.push(r.varint()?);
                }
                Ok(())
            }
            other => {
                self.push(other.varint(field)?);
                Ok(())
            }
        }
    }
    #[cfg(test)]
    fn view(&self) -> View {
        View::List(self.iter().map(Field::view).collect())
    }
}

/// An embedded message, written when present.
impl<M: Message> Field for Option<M> {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        if let Some(m) = self {
            put_bytes(out, field, &m.to_bytes());
        }
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        let m = self.get_or_insert_with(M::default);
        let mut r = Reader::new(value.bytes(field)?);
        while let Some((f, v)) = r.field()? {
            m.merge_field(f, v)?;
        }
        Ok(())
    }
    #[cfg(test)]
    fn view(&self) -> View {
        self.as_ref()
            .map_or(View::Absent, |m| View::Message(m.fields()))
    }
    #[cfg(test)]
    fn known(value: Value<'_>, _raw: &[u8]) -> Result<Known, DecodeError> {
        Ok(Known::Merged(M::known_only(value.bytes(0)?)?))
    }
}

/// repeated embedded messages.
impl<M: Message> Field for Vec<M> {
    fn put(&self, field: u32, out: &mut Vec<u8>) {
        for m in self {
            put_bytes(out, field, &m.to_bytes());
        }
    }
    fn merge(&mut self, field: u32, value: Value<'_>) -> Result<(), DecodeError> {
        self.push(M::decode(value.bytes(field)?)?);
        Ok(())
    }
    #[cfg(test)]
    fn view(&self) -> View {
        View::List(self.iter().map(|m| View::Message(m.fields())).collect())
    }
    #[cfg(test)]
    fn known(value: Value<'_>, _raw: &[u8]) -> Result<Known, DecodeError> {
        let inner = M::known_only(value.bytes(0)?)?;
        let mut out = Vec::new();
        put_varint(&mut out, inner.len() as u64);
        out.extend(inner);
        Ok(Known::Value(out))
    }
}

/// Declares messages: `NUMBER name: Type` per field. Unknown fields are
/// skipped, as protobuf requires.
macro_rules! message {
    ($($(#[$meta:meta])* pub struct $name:ident { $($num:literal $field:ident: $ty:ty,)* })*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name { $(pub $field: $ty,)* }

        impl $crate::proto::Message for $name {
            fn encode(&self, _out: &mut Vec<u8>) {
                $($crate::proto::Field::put(&self.$field, $num, _out);)*
            }
            fn merge_field(
                &mut self,
                field: u32,
                _value: $crate::proto::Value<'_>,
            ) -> Result<(), $crate::proto::DecodeError> {
                match field {
                    $($num => $crate::proto::Field::merge(&mut self.$field, field, _value),)*
                    _ => Ok(()),
                }
            }
            #[cfg(test)]
            fn fields(&self) -> Vec<(u32, String, $crate::proto::View)> {
                vec![$((
                    $num,
                    stringify!($field).to_string(),
                    $crate::proto::Field::view(&self.$field),
                ),)*]
            }
            #[cfg(test)]
            fn known_only(buf: &[u8]) -> Result<Vec<u8>, $crate::proto::DecodeError> {
                $crate::proto::known_only(buf, |_field, _value, _raw| {
                    $(if _field == $num {
                        return <$ty as $crate::proto::Field>::known(_value, _raw).map(Some);
                    })*
                    Ok(None)
                })
            }
        }
    )*};
}
pub(crate) use message;

#[cfg(test)]
mod tests {
    use super::*;

    message! {
        pub struct Inner {
            1 n: u64,
        }
        pub struct Sample {
            1 name: String,
            2 flag: bool,
            3 small: u32,
            4 signed: i32,
            5 list: Vec<String>,
            6 inner: Option<Inner>,
            7 many: Vec<Inner>,
            8 packed: Vec<u64>,
            9 raw: Vec<u8>,
            10 big: i64,
        }
    }

    #[test]
    fn round_trip_and_wire_bytes() {
        let s = Sample {
            name: "ab".into(),
            flag: true,
            small: 300,
            signed: -1,
            list: vec!["x".into(), String::new()],
            inner: Some(Inner { n: 0 }),
            many: vec![Inner { n: 1 }, Inner { n: 2 }],
            packed: vec![1, 128],
            raw: vec![0, 255],
            big: -2,
        };
        let bytes = s.to_bytes();
        assert_eq!(Sample::decode(&bytes).unwrap(), s);
        // Hand-checked encodings: a string, a two-byte varint, a sign
        // extended negative int32, an empty embedded message.
        assert_eq!(&bytes[..4], [0x0a, 2, b'a', b'b']);
        assert_eq!(&bytes[4..9], [0x10, 1, 0x18, 0xac, 0x02]);
        assert_eq!(
            bytes[9..20],
            [0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert!(bytes.windows(2).any(|w| w == [0x32, 0]));
        // Defaults are not written.
        assert!(Sample::default().to_bytes().is_empty());
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_input_refused() {
        // field 15 fixed64, field 14 fixed32, field 13 bytes, then name.
        let mut buf = vec![0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x75, 1, 2, 3, 4, 0x6a, 1, 9];
        buf.extend_from_slice(&[0x0a, 1, b'z']);
        assert_eq!(Sample::decode(&buf).unwrap().name, "z");
        assert_eq!(
            Sample::decode(&[0x0a, 5, b'a']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Sample::decode(&[0x08, 1]), Err(DecodeError::WireType(1, 0)));
        assert_eq!(Sample::decode(&[0x0a, 1, 0xff]), Err(DecodeError::Utf8(1)));
        let mut long = vec![0x10];
        long.extend([0xff; 11]);
        assert_eq!(Sample::decode(&long), Err(DecodeError::LongVarint));
        // Unpacked repeated uint64 is read too.
        assert_eq!(Sample::decode(&[0x40, 5, 0x40, 6]).unwrap().packed, [5, 6]);
    }

    /// Found by fuzzing against containerd's generated code, which refuses
    /// both (as Go's protobuf does).
    #[test]
    fn field_numbers_and_varints_out_of_range_are_refused() {
        assert_eq!(Sample::decode(&[0x02, 0]), Err(DecodeError::FieldNumber(0)));
        // Field 2^32 + 1, length-delimited: it must not land on field 1.
        let mut key = Vec::new();
        put_varint(&mut key, ((1 << 32) + 1) << 3 | 2);
        key.extend_from_slice(&[1, b'z']);
        assert_eq!(
            Sample::decode(&key),
            Err(DecodeError::FieldNumber((1 << 32) + 1))
        );
        let mut max = vec![0x50];
        max.extend([0xff; 9]);
        max.push(0x01);
        assert_eq!(Sample::decode(&max).unwrap().big, -1);
        *max.last_mut().unwrap() = 0x02;
        assert_eq!(Sample::decode(&max), Err(DecodeError::LongVarint));
    }
}
