//! The shim's protobuf code fuzzed against containerd's own generated code
//! (`containerd-shim-protos` and `ttrpc`, dev-dependencies). For each pair
//! of a message here and its original:
//! - random instances of the original, made through the generated code's
//!   reflection, encode there and decode here with every field equal (by
//!   number and name); the shim's encoding of them decodes there to the
//!   same fields, and every field the shim leaves out stays unset;
//! - random bytes and damaged encodings (cut, flipped, grown, a huge
//!   length spliced in) never panic or hang the decoder, and what it
//!   accepts, less the fields it skips unread, containerd's code reads the
//!   same way (`proto::known_only` empties the fields it skips unread and
//!   writes what Go reads where containerd's Rust code is stricter).
//!
//! The cases run under `skiff-fuzzing` (fixed seed, `SKIFF_FUZZ_CASES`).

use std::fmt::Debug;

use containerd_shim_protos::protobuf::reflect::{
    MessageDescriptor, ReflectValueBox, ReflectValueRef, RuntimeFieldType, RuntimeType,
};
use containerd_shim_protos::protobuf::{MessageDyn, MessageFull};
use skiff_fuzzing::fuzz;
use skiff_fuzzing::proptest::collection::vec;
use skiff_fuzzing::proptest::prelude::*;
use skiff_fuzzing::proptest::test_runner::TestCaseError;

use crate::proto::{Message, View};

/// Field names that differ from containerd's (a Rust keyword).
const RENAMED: &[(&str, &str)] = &[("kind", "type")];

/// Cases per message pair and direction.
const CASES: u32 = 60;

/// Checks a message against containerd's original, both ways.
pub fn matches_containerd<O, R>()
where
    O: Message + Clone + Debug + PartialEq,
    R: MessageFull,
{
    round_trips::<O>(R::descriptor());
    survives_damage::<O>(R::descriptor());
}

/// Checks each message of a file against its original(s) with
/// `matches_containerd`, and that no message the file declares is left out:
/// `all_match_containerd!(include_str!("api.rs"); Ours => Theirs, ...; ...)`.
macro_rules! all_match_containerd {
    ($source:expr; $($ours:ty => $($theirs:ty),+;)*) => {{
        $($($crate::wire_fuzz::matches_containerd::<$ours, $theirs>();)+)*
        $crate::wire_fuzz::none_left_out($source, &[$(stringify!($ours)),*]);
    }};
}
pub(crate) use all_match_containerd;

/// Every `pub struct` of `source` is among `checked` (by name or path).
pub fn none_left_out(source: &str, checked: &[&str]) {
    let declared: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub struct "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(declared.len(), checked.len(), "{declared:?}");
    for name in declared {
        let covered = checked
            .iter()
            .any(|c| *c == name || c.ends_with(&format!("::{name}")));
        assert!(covered, "{name} is not checked");
    }
}

/// Bytes a case draws its choices from. Past their end every choice is
/// the smallest, so proptest shrinks a failure to a small message.
struct Entropy<'a>(&'a [u8]);

impl Entropy<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn uint(&mut self) -> u64 {
        const EDGES: [u64; 9] = [
            0,
            1,
            127,
            128,
            1 << 31,
            u32::MAX as u64,
            1 << 32,
            1 << 63,
            u64::MAX,
        ];
        match self.below(3) {
            0 => u64::from(self.byte()),
            1 => EDGES[self.below(EDGES.len())],
            _ => u64::from_le_bytes(std::array::from_fn(|_| self.byte())),
        }
    }

    fn string(&mut self) -> String {
        const PIECES: [&str; 8] = ["a", "/", "é", "💥", "\0", "web", "\n", "="];
        (0..self.below(6))
            .map(|_| PIECES[self.below(PIECES.len())])
            .collect()
    }

    fn bytes(&mut self) -> Vec<u8> {
        (0..self.below(8)).map(|_| self.byte()).collect()
    }
}

fn random_value(t: &RuntimeType, e: &mut Entropy, depth: usize) -> ReflectValueBox {
    match t {
        RuntimeType::I32 => ReflectValueBox::I32(e.uint() as i32),
        RuntimeType::I64 => ReflectValueBox::I64(e.uint() as i64),
        RuntimeType::U32 => ReflectValueBox::U32(e.uint() as u32),
        RuntimeType::U64 => ReflectValueBox::U64(e.uint()),
        RuntimeType::F32 => ReflectValueBox::F32(f32::from(e.byte())),
        RuntimeType::F64 => ReflectValueBox::F64(f64::from(e.byte())),
        RuntimeType::Bool => ReflectValueBox::Bool(e.byte() & 1 == 1),
        RuntimeType::String => ReflectValueBox::String(e.string()),
        RuntimeType::VecU8 => ReflectValueBox::Bytes(e.bytes()),
        // Never negative: protobuf 3.7 sizes a packed negative enum as 5
        // bytes and writes 10, so its own encoding would be corrupt.
        RuntimeType::Enum(d) => ReflectValueBox::Enum(d.clone(), e.uint() as i32 & i32::MAX),
        RuntimeType::Message(d) => ReflectValueBox::Message(random_message(d, e, depth + 1)),
    }
}

/// A random instance of any generated message: each field set or not,
/// nested messages rarer the deeper they are.
fn random_message(d: &MessageDescriptor, e: &mut Entropy, depth: usize) -> Box<dyn MessageDyn> {
    let mut m = d.new_instance();
    for f in d.fields() {
        if depth > 4 || e.below(2 + depth) != 1 {
            continue;
        }
        match f.runtime_field_type() {
            RuntimeFieldType::Singular(t) => {
                let v = random_value(&t, e, depth);
                f.set_singular_field(&mut *m, v);
            }
            RuntimeFieldType::Repeated(t) => {
                for _ in 0..e.below(4) {
                    let v = random_value(&t, e, depth);
                    f.mut_repeated(&mut *m).push(v);
                }
            }
            RuntimeFieldType::Map(k, v) => {
                for _ in 0..e.below(3) {
                    let (k, v) = (random_value(&k, e, depth), random_value(&v, e, depth));
                    f.mut_map(&mut *m).insert(k, v);
                }
            }
        }
    }
    m
}

fn value_view(v: ReflectValueRef) -> View {
    match v {
        ReflectValueRef::U32(v) => View::Unsigned(v.into()),
        ReflectValueRef::U64(v) => View::Unsigned(v),
        ReflectValueRef::I32(v) | ReflectValueRef::Enum(_, v) => View::Signed(v.into()),
        ReflectValueRef::I64(v) => View::Signed(v),
        // The shim has no floating point field: only set or not matters.
        ReflectValueRef::F32(v) => View::Unsigned(v.to_bits().into()),
        ReflectValueRef::F64(v) => View::Unsigned(v.to_bits()),
        ReflectValueRef::Bool(v) => View::Bool(v),
        ReflectValueRef::String(v) => View::Str(v.to_string()),
        ReflectValueRef::Bytes(v) => View::Bytes(v.to_vec()),
        ReflectValueRef::Message(m) => View::Message(fields_of(&*m)),
    }
}

/// Number, name and value of every field of a generated message. An unset
/// proto3 scalar reads as its default, as the shim's fields do.
fn fields_of(m: &dyn MessageDyn) -> Vec<(u32, String, View)> {
    m.descriptor_dyn()
        .fields()
        .map(|f| {
            let view = match f.runtime_field_type() {
                RuntimeFieldType::Singular(RuntimeType::Message(_)) => {
                    f.get_singular(m).map_or(View::Absent, value_view)
                }
                RuntimeFieldType::Singular(_) => value_view(f.get_singular_field_or_default(m)),
                RuntimeFieldType::Repeated(_) => {
                    View::List(f.get_repeated(m).into_iter().map(value_view).collect())
                }
                // The shim has no map field: only empty or not matters.
                RuntimeFieldType::Map(..) => View::List(vec![View::Absent; f.get_map(m).len()]),
            };
            (f.number() as u32, f.name().to_string(), view)
        })
        .collect()
}

fn is_default(v: &View) -> bool {
    match v {
        View::Unsigned(v) => *v == 0,
        View::Signed(v) => *v == 0,
        View::Bool(v) => !v,
        View::Str(v) => v.is_empty(),
        View::Bytes(v) => v.is_empty(),
        View::List(v) => v.is_empty(),
        View::Absent => true,
        View::Message(_) => false,
    }
}

/// Compares the shim's view of a message with containerd's, field by field
/// (matched by number, checked by name). With `exact`, every field the
/// shim does not know must be unset on containerd's side.
fn compare(at: &str, ours: &View, theirs: &View, exact: bool) -> Result<(), String> {
    match (ours, theirs) {
        (View::Message(ours), View::Message(theirs)) => {
            for (number, name, value) in ours {
                let place = format!("{at}.{name}");
                let Some((_, their_name, their_value)) = theirs.iter().find(|f| f.0 == *number)
                else {
                    return Err(format!("{place}: containerd has no field {number}"));
                };
                let renamed = RENAMED.contains(&(name.as_str(), their_name.as_str()));
                if name != their_name && !renamed {
                    return Err(format!(
                        "{place}: field {number} is {their_name} to containerd"
                    ));
                }
                compare(&place, value, their_value, exact)?;
            }
            match theirs.iter().find(|(number, _, value)| {
                exact && !ours.iter().any(|f| f.0 == *number) && !is_default(value)
            }) {
                Some((_, name, value)) => Err(format!(
                    "{at}.{name}: set to {value:?}, though the shim never writes it"
                )),
                None => Ok(()),
            }
        }
        (View::List(ours), View::List(theirs)) if ours.len() == theirs.len() => ours
            .iter()
            .zip(theirs)
            .enumerate()
            .try_for_each(|(i, (o, t))| compare(&format!("{at}[{i}]"), o, t, exact)),
        _ if ours == theirs => Ok(()),
        _ => Err(format!(
            "{at}: the shim reads {ours:?}, containerd {theirs:?}"
        )),
    }
}

fn fail(why: String) -> TestCaseError {
    TestCaseError::fail(why)
}

/// containerd's encoding of a random instance decodes here to the same
/// fields; the shim's encoding of that decodes there to them again.
fn round_trips<O: Message + Clone + Debug + PartialEq>(d: MessageDescriptor) {
    let target = format!("{} round trip", d.full_name());
    fuzz(&target, CASES, vec(any::<u8>(), 0..256), |entropy| {
        let theirs = random_message(&d, &mut Entropy(&entropy), 0);
        let bytes = theirs.write_to_bytes_dyn().unwrap();
        let ours = O::decode(&bytes)
            .map_err(|e| fail(format!("containerd's encoding refused: {e}: {bytes:?}")))?;
        let view = View::Message(ours.fields());
        compare(d.name(), &view, &View::Message(fields_of(&*theirs)), false).map_err(fail)?;
        let back = ours.to_bytes();
        let again = d
            .parse_from_bytes(&back)
            .map_err(|e| fail(format!("containerd refuses the shim's encoding: {e}")))?;
        compare(d.name(), &view, &View::Message(fields_of(&*again)), true).map_err(fail)?;
        prop_assert_eq!(O::decode(&back).ok(), Some(ours));
        Ok(())
    });
}

/// One change to an encoding: cut it, flip bits, insert a byte, or splice
/// in a length of about 4 GiB.
fn damage(bytes: &mut Vec<u8>, (at, byte, kind): (usize, u8, u8)) {
    let at = at % (bytes.len() + 1);
    match kind {
        0 => bytes.truncate(at),
        1 if at < bytes.len() => bytes[at] ^= byte,
        2 => {
            bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
        _ => bytes.insert(at, byte),
    }
}

/// Random bytes and damaged encodings: the decoder refuses them or reads
/// what containerd's code reads, and what it reads encodes canonically.
fn survives_damage<O: Message + Clone + Debug + PartialEq>(d: MessageDescriptor) {
    let target = format!("{} damaged", d.full_name());
    let edits = vec((any::<usize>(), any::<u8>(), 0..4u8), 0..4);
    let strategy = (vec(any::<u8>(), 0..256), edits, any::<bool>());
    fuzz(&target, CASES, strategy, |(entropy, edits, raw)| {
        let mut bytes = if raw {
            entropy
        } else {
            let theirs = random_message(&d, &mut Entropy(&entropy), 0);
            theirs.write_to_bytes_dyn().unwrap()
        };
        edits.into_iter().for_each(|e| damage(&mut bytes, e));
        let Ok(ours) = O::decode(&bytes) else {
            return Ok(());
        };
        prop_assert_eq!(O::decode(&ours.to_bytes()).ok(), Some(ours.clone()));
        let known = O::known_only(&bytes)
            .map_err(|e| fail(format!("decoded, but not walked again: {e}")))?;
        match d.parse_from_bytes(&known) {
            Ok(theirs) => compare(
                d.name(),
                &View::Message(ours.fields()),
                &View::Message(fields_of(&*theirs)),
                false,
            )
            .map_err(|why| fail(format!("{why}: {bytes:?} read as {known:?}"))),
            Err(e) => Err(fail(format!(
                "the shim reads {ours:?} where containerd refuses ({e}): {known:?}"
            ))),
        }
    });
}
