//! `mounts[].options` (`MountOptions::parse`) against a model written from
//! runc 1.1.5's option table and the kernel's rules, on random lists of
//! known options, their `r` variants, near misses and filesystem data:
//! - a flag and its negation: the last one wins (`ro`/`rw`, `nodev`/`dev`,
//!   ...), for the mount and, with `r`, recursively;
//! - atime, as runc gets it from the kernel: `noatime` and `strictatime`
//!   are flags their negations (`atime`, `nostrictatime`) clear, and
//!   `strictatime` beats `noatime` beats `relatime` whatever the order;
//! - propagation changes and superblock flags keep their order; `rbind` or
//!   `ridmap` anywhere makes the bind or id-mapping recursive; crun's
//!   `src-nofollow` and `dest-nofollow` are flags of their own;
//! - every other word is filesystem data, split at its first `=`, in
//!   order, except `x-*` (for userspace helpers) and the empty word;
//! - what reaches mount_setattr and fsmount is something the kernel takes
//!   (one atime mode, the whole atime field cleared when one is set), also
//!   when a refused sysfs or mqueue becomes an rbind of the host's.

use skiff::rootfs::options::Propagation;
use skiff::rootfs::MountOptions;
use skiff::syscalls::MountAttr;
use skiff_fuzzing::proptest::collection::vec;
use skiff_fuzzing::proptest::prelude::*;
use skiff_fuzzing::proptest::sample::select;
use skiff_fuzzing::proptest::test_runner::TestCaseError;

use skiff_fuzzing::fuzz;

const ATIME: u64 = libc::MOUNT_ATTR__ATIME;

/// runc's per-mount flags: the name, the attribute, whether it sets it.
const FLAGS: &[(&str, u64, bool)] = &[
    ("ro", libc::MOUNT_ATTR_RDONLY, true),
    ("rw", libc::MOUNT_ATTR_RDONLY, false),
    ("nosuid", libc::MOUNT_ATTR_NOSUID, true),
    ("suid", libc::MOUNT_ATTR_NOSUID, false),
    ("nodev", libc::MOUNT_ATTR_NODEV, true),
    ("dev", libc::MOUNT_ATTR_NODEV, false),
    ("noexec", libc::MOUNT_ATTR_NOEXEC, true),
    ("exec", libc::MOUNT_ATTR_NOEXEC, false),
    ("nodiratime", libc::MOUNT_ATTR_NODIRATIME, true),
    ("diratime", libc::MOUNT_ATTR_NODIRATIME, false),
    ("nosymfollow", libc::MOUNT_ATTR_NOSYMFOLLOW, true),
    ("symfollow", libc::MOUNT_ATTR_NOSYMFOLLOW, false),
];

/// The atime words: the flag each sets or clears (none for `relatime` and
/// `norelatime`: relatime is what remains when neither flag is set).
const ATIMES: &[(&str, u64, bool)] = &[
    ("noatime", libc::MOUNT_ATTR_NOATIME, true),
    ("atime", libc::MOUNT_ATTR_NOATIME, false),
    ("strictatime", libc::MOUNT_ATTR_STRICTATIME, true),
    ("nostrictatime", libc::MOUNT_ATTR_STRICTATIME, false),
    ("relatime", 0, true),
    ("norelatime", 0, false),
];

const PROPAGATIONS: &[(&str, u64)] = &[
    ("shared", libc::MS_SHARED),
    ("slave", libc::MS_SLAVE),
    ("private", libc::MS_PRIVATE),
    ("unbindable", libc::MS_UNBINDABLE),
];

const SB_FLAGS: &[&str] = &[
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "lazytime",
    "nolazytime",
];

const IGNORED: &[&str] = &["defaults", "iversion", "noiversion", "silent", "loud"];

/// What the options should come to, built one option at a time.
#[derive(Default)]
struct Model {
    /// Per bit: the last word that named it (true: set).
    flags: [Vec<(u64, bool)>; 2],
    /// noatime, strictatime, and whether any atime word came.
    atime: [(bool, bool, bool); 2],
    propagation: Vec<Propagation>,
    bind: Option<bool>,
    idmap: Option<bool>,
    remount: bool,
    tmpcopyup: bool,
    src_nofollow: bool,
    dest_nofollow: bool,
    sb_flags: Vec<&'static str>,
    data: Vec<(String, Option<String>)>,
}

impl Model {
    fn word(&mut self, word: &str) {
        if self.attribute(word, 0) {
            return;
        }
        if word.strip_prefix('r').is_some_and(|w| self.attribute(w, 1)) {
            return;
        }
        let plain = PROPAGATIONS.iter().find(|(n, _)| *n == word);
        let recursive = PROPAGATIONS
            .iter()
            .find(|(n, _)| Some(*n) == word.strip_prefix('r'));
        if let Some(&(_, flag)) = plain.or(recursive) {
            self.propagation.push(Propagation {
                flag,
                recursive: plain.is_none(),
            });
            return;
        }
        if let Some(f) = SB_FLAGS.iter().find(|f| **f == word) {
            self.sb_flags.push(f);
            return;
        }
        match word {
            "bind" => self.bind = Some(self.bind.unwrap_or(false)),
            "rbind" => self.bind = Some(true),
            "idmap" => self.idmap = Some(self.idmap.unwrap_or(false)),
            "ridmap" => self.idmap = Some(true),
            "remount" => self.remount = true,
            "tmpcopyup" => self.tmpcopyup = true,
            "src-nofollow" => self.src_nofollow = true,
            "dest-nofollow" => self.dest_nofollow = true,
            "" => {}
            _ if IGNORED.contains(&word) || word.starts_with("x-") => {}
            _ => self.data.push(match word.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (word.to_string(), None),
            }),
        }
    }

    /// Records an attribute word for the mount (0) or recursively (1).
    fn attribute(&mut self, word: &str, level: usize) -> bool {
        if let Some(&(_, bit, set)) = FLAGS.iter().find(|(n, _, _)| *n == word) {
            self.flags[level].retain(|(b, _)| *b != bit);
            self.flags[level].push((bit, set));
            return true;
        }
        if let Some(&(_, bit, set)) = ATIMES.iter().find(|(n, _, _)| *n == word) {
            let (noatime, strict, given) = &mut self.atime[level];
            *given = true;
            match bit {
                libc::MOUNT_ATTR_NOATIME => *noatime = set,
                libc::MOUNT_ATTR_STRICTATIME => *strict = set,
                _ => {}
            }
            return true;
        }
        false
    }

    fn attr(&self, level: usize) -> MountAttr {
        let mut attr = MountAttr::default();
        for &(bit, set) in &self.flags[level] {
            if set {
                attr.set |= bit;
            } else {
                attr.clear |= bit;
            }
        }
        let (noatime, strict, given) = self.atime[level];
        if given {
            attr.clear |= ATIME;
            attr.set |= match (strict, noatime) {
                (true, _) => libc::MOUNT_ATTR_STRICTATIME,
                (false, true) => libc::MOUNT_ATTR_NOATIME,
                (false, false) => libc::MOUNT_ATTR_RELATIME,
            };
        }
        attr
    }
}

/// What mount_setattr(2) refuses with EINVAL: an atime mode that is not
/// one of the three, or one set without clearing the whole atime field.
fn setattr_refuses(attr: &MountAttr) -> Option<String> {
    let touches_atime = (attr.set | attr.clear) & ATIME != 0;
    let mode = attr.set & ATIME;
    let valid_mode = [
        libc::MOUNT_ATTR_RELATIME,
        libc::MOUNT_ATTR_NOATIME,
        libc::MOUNT_ATTR_STRICTATIME,
    ]
    .contains(&mode);
    if touches_atime && (attr.clear & ATIME != ATIME || !valid_mode) {
        return Some(format!("atime set {mode:#x} with clear {:#x}", attr.clear));
    }
    (attr.set & attr.clear & !ATIME != 0).then(|| format!("bits both set and cleared: {attr:?}"))
}

/// Words near the parser's edges: every name it knows, their `r` forms,
/// case and spacing variants, and filesystem data.
fn word() -> impl Strategy<Value = String> {
    let mut known: Vec<String> = skiff::rootfs::options::recognized();
    known.extend(known.clone().iter().map(|n| format!("r{n}")));
    known.extend(
        [
            "",
            "r",
            "rr",
            "RO",
            " ro",
            "ro ",
            "x-",
            "x-systemd.automount",
            "=",
            "a=b=c",
            "size=64k",
            "mode=1777",
            "uid=0",
            "gid=5",
            "newinstance",
            "ptmxmode=0666",
            "lowerdir=/l:/m",
            "upperdir=/u",
            "context=\"system_u:object_r:x:s0\"",
        ]
        .map(String::from),
    );
    prop_oneof![
        6 => select(known),
        1 => "[a-z=,-]{0,8}",
        1 => any::<String>(),
    ]
}

fn check(options: &[String]) -> Result<(), TestCaseError> {
    let parsed = MountOptions::parse(options);
    let mut model = Model::default();
    options.iter().for_each(|o| model.word(o));
    prop_assert_eq!(parsed.attr, model.attr(0), "attributes");
    prop_assert_eq!(parsed.recursive_attr, model.attr(1), "recursive attributes");
    prop_assert_eq!(&parsed.propagation, &model.propagation);
    prop_assert_eq!(parsed.bind, model.bind);
    prop_assert_eq!(parsed.idmap, model.idmap);
    prop_assert_eq!(parsed.remount, model.remount);
    prop_assert_eq!(parsed.tmpcopyup, model.tmpcopyup);
    prop_assert_eq!(parsed.src_nofollow, model.src_nofollow);
    prop_assert_eq!(parsed.dest_nofollow, model.dest_nofollow);
    prop_assert_eq!(&parsed.sb_flags, &model.sb_flags);
    prop_assert_eq!(&parsed.data, &model.data);
    for attr in [parsed.attr, parsed.recursive_attr] {
        if let Some(why) = setattr_refuses(&attr) {
            return Err(TestCaseError::fail(format!("mount_setattr: {why}")));
        }
    }
    let flags = parsed.fsmount_flags();
    let fsmount = MountAttr {
        set: flags,
        clear: if flags & ATIME != 0 { ATIME } else { 0 },
        propagation: 0,
    };
    if let Some(why) = setattr_refuses(&fsmount) {
        return Err(TestCaseError::fail(format!("fsmount: {why}")));
    }
    prop_assert_eq!(flags & libc::MOUNT_ATTR_IDMAP, 0, "fsmount takes no idmap");
    let rbind = parsed.as_rbind();
    if let Some(why) = setattr_refuses(&rbind.recursive_attr) {
        return Err(TestCaseError::fail(format!("rbind in place: {why}")));
    }
    prop_assert_eq!(
        rbind.recursive_attr.set & parsed.attr.set,
        parsed.attr.set,
        "the mount's attributes reach its submounts"
    );
    Ok(())
}

#[test]
fn mount_options_follow_runc() {
    fuzz("mount options", 3000, vec(word(), 0..12), |options| {
        check(&options)
    });
}
