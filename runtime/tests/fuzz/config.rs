//! config.json loading and validation (`Bundle::load`): real configs
//! (`skiff spec`, its rootless variant, Podman's, containerd's, and one
//! that sets every section skiff validates) mutated at random, random JSON
//! documents and random bytes. None may panic or hang; every rejection is
//! one line that starts with the field or path at fault; every accepted
//! config survives a serialize/load round trip unchanged.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use skiff::bundle::{parse_spec, Bundle};
use skiff::validate;
use skiff_fuzzing::proptest::collection::vec;
use skiff_fuzzing::proptest::prelude::*;
use skiff_fuzzing::proptest::sample::select;
use skiff_fuzzing::proptest::test_runner::TestCaseError;

use skiff_fuzzing::fuzz;

/// Configs as engines write them, the starting points of mutation.
fn seeds() -> &'static [(&'static str, Value)] {
    static SEEDS: OnceLock<Vec<(&'static str, Value)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let spec = skiff::commands::spec::text(None);
        let rootless = skiff::commands::spec::text(Some((1000, 1000)));
        [
            ("skiff spec", &spec[..]),
            ("skiff spec --rootless", &rootless[..]),
            ("podman", include_bytes!("seeds/podman.json")),
            ("containerd", include_bytes!("seeds/containerd.json")),
            ("everything", include_bytes!("seeds/everything.json")),
        ]
        .into_iter()
        .map(|(name, text)| (name, serde_json::from_slice(text).unwrap()))
        .collect()
    })
}

/// Every object key of the seeds and the spec fields none of them sets:
/// random keys from here land where the loader looks.
fn keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => o.iter().for_each(|(k, v)| {
                    out.push(k.clone());
                    collect(v, out);
                }),
                Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        let mut out: Vec<String> = [
            "intelRdt",
            "netDevices",
            "memoryPolicy",
            "personality",
            "execCPUAffinity",
            "mountLabel",
            "apparmorProfile",
            "selinuxLabel",
            "username",
            "listenerPath",
            "flags",
            "vm",
            "windows",
            "solaris",
            "zos",
        ]
        .map(String::from)
        .to_vec();
        seeds().iter().for_each(|(_, v)| collect(v, &mut out));
        out.sort();
        out.dedup();
        out
    })
}

/// Strings that sit on the edges of what the loader checks.
const STRINGS: &[&str] = &[
    "",
    "/",
    ".",
    "..",
    "../..",
    "/../../etc",
    "a/../../b",
    "/a/../b",
    "rel/path",
    "/proc",
    "/dev/null",
    "\0",
    "a\nb",
    "\t",
    "\u{1b}[31m",
    "\u{202e}",
    "é💥",
    "1.0.2",
    "1.2.0",
    "2.0.0",
    "1",
    "-1",
    "18446744073709551616",
    "CAP_SYS_ADMIN",
    "CAP_BOGUS",
    "RLIMIT_NOFILE",
    "RLIMIT_BOGUS",
    "mount",
    "user",
    "pid",
    "uts",
    "time",
    "network",
    "bogus",
    "rshared",
    "private",
    "sideways",
    "bind",
    "rbind",
    "ro",
    "rro",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ARCH_X86_64",
    "SCMP_CMP_EQ",
    "net.ipv4.ip_forward",
    "kernel.shmmax",
    "kernel.panic",
    "net..x",
    "monotonic",
    "boottime",
    "realtime",
    "c",
    "b",
    "u",
    "p",
    "rwm",
    "IOPRIO_CLASS_RT",
    "SCHED_FIFO",
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    7,
    8,
    -20,
    -21,
    19,
    20,
    1000,
    65536,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    u32::MAX as i64 + 1,
    i64::MAX,
    i64::MIN,
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(STRINGS).prop_map(String::from),
        2 => select(keys()),
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        select(INTS).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[-0.0, 0.5, 1e300, -1e-300, 4294967296.5][..]).prop_map(Value::from),
        string().prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((select(keys()), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a document; nodes are picked by their index in a
/// preorder walk, modulo the number of nodes.
#[derive(Debug, Clone)]
enum Mutation {
    Replace {
        at: usize,
        with: Value,
    },
    /// Removes one member of an object or array.
    Remove {
        at: usize,
        which: usize,
    },
    /// Adds a key to an object, or an element to an array.
    Insert {
        at: usize,
        key: String,
        value: Value,
    },
    /// Copies another node of the same document here: values that are
    /// valid somewhere, in the wrong place.
    Splice {
        at: usize,
        from: usize,
    },
    /// Repeats an element of an array (duplicate namespaces, rlimits).
    Duplicate {
        at: usize,
        which: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, prop_oneof![scalar(), json()]).prop_map(|(at, with)| Mutation::Replace { at, with }),
        (at, any::<usize>()).prop_map(|(at, which)| Mutation::Remove { at, which }),
        (at, select(keys()), json()).prop_map(|(at, key, value)| Mutation::Insert {
            at,
            key,
            value
        }),
        (at, any::<usize>()).prop_map(|(at, from)| Mutation::Splice { at, from }),
        (at, any::<usize>()).prop_map(|(at, which)| Mutation::Duplicate { at, which }),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The node at preorder index `n` (`n < count(v)`).
fn nth(v: &mut Value, n: usize) -> &mut Value {
    if n == 0 {
        return v;
    }
    let mut n = n - 1;
    let children: Box<dyn Iterator<Item = &mut Value>> = match v {
        Value::Array(a) => Box::new(a.iter_mut()),
        Value::Object(o) => Box::new(o.values_mut()),
        _ => unreachable!("index within the node count"),
    };
    for child in children {
        let size = count(child);
        if n < size {
            return nth(child, n);
        }
        n -= size;
    }
    unreachable!("index within the node count")
}

fn apply(doc: &mut Value, m: &Mutation) {
    let pick = |doc: &Value, i: usize| i % count(doc);
    match m {
        Mutation::Replace { at, with } => *nth(doc, pick(doc, *at)) = with.clone(),
        Mutation::Remove { at, which } => match nth(doc, pick(doc, *at)) {
            Value::Array(a) if !a.is_empty() => {
                a.remove(which % a.len());
            }
            Value::Object(o) if !o.is_empty() => {
                let key = o.keys().nth(which % o.len()).cloned().unwrap();
                o.remove(&key);
            }
            other => *other = Value::Null,
        },
        Mutation::Insert { at, key, value } => match nth(doc, pick(doc, *at)) {
            Value::Array(a) => a.push(value.clone()),
            Value::Object(o) => {
                o.insert(key.clone(), value.clone());
            }
            other => *other = value.clone(),
        },
        Mutation::Splice { at, from } => {
            let copy = nth(doc, pick(doc, *from)).clone();
            *nth(doc, pick(doc, *at)) = copy;
        }
        Mutation::Duplicate { at, which } => {
            if let Value::Array(a) = nth(doc, pick(doc, *at)) {
                if !a.is_empty() {
                    let copy = a[which % a.len()].clone();
                    a.push(copy);
                }
            }
        }
    }
}

/// A bundle directory with a rootfs, whose config.json each case rewrites.
struct Scratch {
    dir: PathBuf,
    /// Cases loaded and cases refused, for the summary.
    outcomes: Cell<(u32, u32)>,
}

impl Scratch {
    fn new(target: &str) -> Scratch {
        // On ext4 a rewrite of a file flushes it (auto_da_alloc), which
        // costs more than the load; tmpfs does not.
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = parent.join(format!("skiff-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        Scratch {
            dir,
            outcomes: Cell::new((0, 0)),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Loads `bytes` as the bundle's config.json and checks the outcome.
    fn check(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
        std::fs::write(self.config(), bytes).unwrap();
        let (loaded, refused) = self.outcomes.get();
        match Bundle::load(&self.dir) {
            Err(e) => {
                self.outcomes.set((loaded, refused + 1));
                check_message(&e.to_string(), &self.config())
            }
            Ok(bundle) => {
                self.outcomes.set((loaded + 1, refused));
                self.check_round_trip(&bundle)
            }
        }
        .map_err(|why| {
            TestCaseError::fail(format!(
                "{why}\nconfig.json: {}",
                String::from_utf8_lossy(bytes)
            ))
        })
    }

    /// An accepted config, written back out by serde, loads again into
    /// the same spec: what the state keeps for `exec` and what the shim
    /// passes on mean what was accepted.
    fn check_round_trip(&self, bundle: &Bundle) -> Result<(), String> {
        let text = serde_json::to_vec(&bundle.spec).map_err(|e| format!("serialize: {e}"))?;
        let again = parse_spec(&text, &self.config())
            .map_err(|e| format!("accepted, but its serialization is refused: {e}"))?;
        if again != bundle.spec {
            return Err(format!(
                "accepted, but changed by a round trip: {}",
                String::from_utf8_lossy(&text)
            ));
        }
        validate::spec(&again).map_err(|e| format!("accepted, but not once serialized: {e}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (loaded, refused) = self.outcomes.get();
        eprintln!("{}: {loaded} loaded, {refused} refused", self.dir.display());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rejection is one line (no control character at all: a config can
/// carry any, and they must arrive escaped) that starts with the field at
/// fault (`process.args: `, `mounts[3].destination: `,
/// `linux.sysctl["net.ipv4.ip_forward"]: `), or with config.json's path
/// and then, for a parse error, the field.
fn check_message(msg: &str, config: &Path) -> Result<(), String> {
    if let Some(c) = msg.chars().find(|c| c.is_control()) {
        return Err(format!(
            "error is not one plain line ({c:?} in it): {msg:?}"
        ));
    }
    let prefix = format!("{}: ", config.display());
    let rest = match msg.strip_prefix(&prefix) {
        Some(rest) if rest.starts_with("unsupported ociVersion ") => return Ok(()),
        Some(rest) => rest,
        None => msg,
    };
    match field_len(rest) {
        Some(n) if rest[n..].starts_with(": ") && rest.len() > n + 2 => Ok(()),
        _ => Err(format!("error does not start with a field: {msg:?}")),
    }
}

/// The length of the field path `rest` starts with: a name, then `.name`,
/// `[index]` or `["key"]` parts.
fn field_len(rest: &str) -> Option<usize> {
    let name = |s: &str| {
        let n = s
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(s.len());
        (n > 0 && s.starts_with(|c: char| c.is_ascii_alphabetic())).then_some(n)
    };
    let mut at = name(rest)?;
    loop {
        let s = &rest[at..];
        if let Some(after) = s.strip_prefix('.') {
            at += 1 + name(after)?;
        } else if let Some(after) = s.strip_prefix("[\"") {
            at += 2 + quoted_len(after)? + 1;
            rest[at..].starts_with(']').then_some(())?;
            at += 1;
        } else if let Some(after) = s.strip_prefix('[') {
            let digits = after.find(|c: char| !c.is_ascii_digit())?;
            (digits > 0 && after[digits..].starts_with(']')).then_some(())?;
            at += 1 + digits + 1;
        } else {
            return Some(at);
        }
    }
}

/// The length of a quoted string's body up to its closing quote.
fn quoted_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[test]
fn mutated_real_configs() {
    let scratch = Scratch::new("mutated");
    let seed = 0..seeds().len();
    let strategy = (seed, vec(mutation(), 1..4));
    fuzz("mutated config.json", 400, strategy, |(seed, mutations)| {
        let mut doc = seeds()[seed].1.clone();
        mutations.iter().for_each(|m| apply(&mut doc, m));
        scratch.check(&serde_json::to_vec(&doc).unwrap())
    });
}

#[test]
fn random_json_configs() {
    let scratch = Scratch::new("random");
    let document = vec((select(keys()), json()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()));
    fuzz("random config.json", 200, document, |doc| {
        scratch.check(&serde_json::to_vec(&doc).unwrap())
    });
}

/// Byte-level damage to real configs: truncation, flipped bits, inserted
/// bytes; mostly malformed JSON, whose errors must name the position.
#[test]
fn damaged_config_bytes() {
    let scratch = Scratch::new("bytes");
    let edit = (any::<usize>(), any::<u8>(), 0..3u8);
    let strategy = (0..seeds().len(), vec(edit, 1..4));
    fuzz("damaged config.json", 300, strategy, |(seed, edits)| {
        let mut bytes = serde_json::to_vec(&seeds()[seed].1).unwrap();
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 => bytes.truncate(at),
                1 if at < bytes.len() => bytes[at] ^= byte,
                _ => bytes.insert(at, byte),
            }
        }
        scratch.check(&bytes)
    });
}

#[test]
fn the_field_check_itself() {
    let config = Path::new("/b/config.json");
    for good in [
        "process.args: must not be empty",
        "mounts[3].destination: \"..\" points outside the container",
        "linux.sysctl[\"net.ipv4.ip_forward\"]: needs a private network namespace",
        "/b/config.json: process.args[0]: invalid type: integer `1` at line 1 column 2",
        "/b/config.json: unsupported ociVersion \"2.0.0\" (skiff supports 1.x)",
        "root.path: /b/x: not a directory",
    ] {
        check_message(good, config).unwrap();
    }
    for bad in [
        "the container init exited during setup",
        "process.args:",
        "mounts[x].destination: no",
        "/b/config.json: EOF while parsing",
        "process.env[0]: a\nb",
        "linux.sysctl[\"a]: x",
    ] {
        check_message(bad, config).unwrap_err();
    }
}
