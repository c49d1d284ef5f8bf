//! `mounts[].options` parsed into what the fd-based mount API takes: mount
//! attributes (per mount or recursive), propagation changes, bind-ness,
//! superblock flags and filesystem data. Pure, so every option is tested.

use crate::syscalls::MountAttr;

/// A propagation change, in the order the options gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE.
    pub flag: u64,
    pub recursive: bool,
}

/// Parsed mount options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Attributes for the top mount only (`ro`, `nosuid`, ...).
    pub attr: MountAttr,
    /// Attributes for the mount and every submount (`rro`, `rnosuid`, ...).
    pub recursive_attr: MountAttr,
    /// Propagation changes.
    pub propagation: Vec<Propagation>,
    /// `Some(recursive)` for `bind` / `rbind`.
    pub bind: Option<bool>,
    /// `remount`: change an existing mount instead of making one.
    pub remount: bool,
    /// Superblock flags handed to the filesystem (`sync`, `dirsync`, ...).
    pub sb_flags: Vec<&'static str>,
    /// Filesystem-specific options, `key` or `key=value`.
    pub data: Vec<(String, Option<String>)>,
    /// `idmap` / `ridmap`: an id-mapped mount (`Some(recursive)`).
    pub idmap: Option<bool>,
    /// `tmpcopyup`: copy the target's content into a new tmpfs.
    pub tmpcopyup: bool,
    /// `src-nofollow` (crun): a bind source that is a symlink is bound
    /// itself, not what it points to.
    pub src_nofollow: bool,
    /// `dest-nofollow` (crun): a bind destination that is a symlink gets
    /// the mount on the symlink itself, not on what it points to.
    pub dest_nofollow: bool,
}

/// What a single attribute option does.
#[derive(Clone, Copy)]
enum AttrOp {
    Set(u64),
    Clear(u64),
    /// `noatime` (true) or its negation `atime`.
    NoAtime(bool),
    /// `strictatime` (true) or `nostrictatime`.
    StrictAtime(bool),
    /// `relatime` and `norelatime`: relatime is what remains when neither
    /// flag above is set, so they only say that atime was asked about.
    RelAtime,
}

/// Per-mount attributes; each also exists recursively with an `r` prefix.
const ATTRS: &[(&str, AttrOp)] = &[
    ("ro", AttrOp::Set(libc::MOUNT_ATTR_RDONLY)),
    ("rw", AttrOp::Clear(libc::MOUNT_ATTR_RDONLY)),
    ("nosuid", AttrOp::Set(libc::MOUNT_ATTR_NOSUID)),
    ("suid", AttrOp::Clear(libc::MOUNT_ATTR_NOSUID)),
    ("nodev", AttrOp::Set(libc::MOUNT_ATTR_NODEV)),
    ("dev", AttrOp::Clear(libc::MOUNT_ATTR_NODEV)),
    ("noexec", AttrOp::Set(libc::MOUNT_ATTR_NOEXEC)),
    ("exec", AttrOp::Clear(libc::MOUNT_ATTR_NOEXEC)),
    ("nodiratime", AttrOp::Set(libc::MOUNT_ATTR_NODIRATIME)),
    ("diratime", AttrOp::Clear(libc::MOUNT_ATTR_NODIRATIME)),
    ("nosymfollow", AttrOp::Set(libc::MOUNT_ATTR_NOSYMFOLLOW)),
    ("symfollow", AttrOp::Clear(libc::MOUNT_ATTR_NOSYMFOLLOW)),
    ("noatime", AttrOp::NoAtime(true)),
    ("atime", AttrOp::NoAtime(false)),
    ("strictatime", AttrOp::StrictAtime(true)),
    ("nostrictatime", AttrOp::StrictAtime(false)),
    ("relatime", AttrOp::RelAtime),
    ("norelatime", AttrOp::RelAtime),
];

fn attr_op(name: &str) -> Option<AttrOp> {
    ATTRS.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
}

/// Propagation types; each also exists recursively with an `r` prefix.
const PROPAGATIONS: &[(&str, u64)] = &[
    ("shared", libc::MS_SHARED),
    ("slave", libc::MS_SLAVE),
    ("private", libc::MS_PRIVATE),
    ("unbindable", libc::MS_UNBINDABLE),
];

/// Superblock flags the VFS itself understands for any filesystem.
const SB_FLAGS: &[&str] = &[
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "lazytime",
    "nolazytime",
];

/// Options with a meaning of their own to skiff.
#[derive(Clone, Copy)]
enum Special {
    Bind {
        recursive: bool,
    },
    Remount,
    Idmap {
        recursive: bool,
    },
    TmpCopyUp,
    SrcNoFollow,
    DestNoFollow,
    /// No kernel meaning: `defaults` is the empty set; `(no)iversion` and
    /// `silent`/`loud` are legacy MS_ flags the fd API has no use for.
    Ignored,
}

const SPECIAL: &[(&str, Special)] = &[
    ("bind", Special::Bind { recursive: false }),
    ("rbind", Special::Bind { recursive: true }),
    ("remount", Special::Remount),
    ("idmap", Special::Idmap { recursive: false }),
    ("ridmap", Special::Idmap { recursive: true }),
    ("tmpcopyup", Special::TmpCopyUp),
    ("src-nofollow", Special::SrcNoFollow),
    ("dest-nofollow", Special::DestNoFollow),
    ("defaults", Special::Ignored),
    ("iversion", Special::Ignored),
    ("noiversion", Special::Ignored),
    ("silent", Special::Ignored),
    ("loud", Special::Ignored),
];

/// Every option name skiff recognises (the rest are filesystem data), for
/// the `features` output; built from the same tables the parser uses.
pub fn recognized() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in ATTRS {
        names.push(n.to_string());
        names.push(format!("r{n}"));
    }
    for (n, _) in PROPAGATIONS {
        names.push(n.to_string());
        names.push(format!("r{n}"));
    }
    names.extend(SB_FLAGS.iter().map(|n| n.to_string()));
    names.extend(SPECIAL.iter().map(|(n, _)| n.to_string()));
    names.sort();
    names.dedup();
    names
}

/// The atime options of one list, kept as runc keeps them: `noatime` and
/// `strictatime` are flags their negations clear, and the kernel then
/// takes strictatime over noatime over relatime, whatever the order.
#[derive(Default, Clone, Copy)]
struct Atime {
    given: bool,
    noatime: bool,
    strict: bool,
}

impl Atime {
    /// The one atime mode mount_setattr and fsmount take, if any was asked.
    fn mode(self) -> Option<u64> {
        self.given.then_some(if self.strict {
            libc::MOUNT_ATTR_STRICTATIME
        } else if self.noatime {
            libc::MOUNT_ATTR_NOATIME
        } else {
            libc::MOUNT_ATTR_RELATIME
        })
    }
}

fn apply(attr: &mut MountAttr, atime: &mut Atime, op: AttrOp) {
    match op {
        AttrOp::Set(bit) => {
            attr.set |= bit;
            attr.clear &= !bit;
        }
        AttrOp::Clear(bit) => {
            attr.clear |= bit;
            attr.set &= !bit;
        }
        AttrOp::NoAtime(on) => {
            atime.given = true;
            atime.noatime = on;
        }
        AttrOp::StrictAtime(on) => {
            atime.given = true;
            atime.strict = on;
        }
        AttrOp::RelAtime => atime.given = true,
    }
}

/// Writes the atime mode into `attr`: mount_setattr wants the whole atime
/// field cleared whenever one mode is set.
fn set_atime(attr: &mut MountAttr, atime: Atime) {
    if let Some(mode) = atime.mode() {
        attr.set = (attr.set & !libc::MOUNT_ATTR__ATIME) | mode;
        attr.clear |= libc::MOUNT_ATTR__ATIME;
    }
}

fn propagation(name: &str) -> Option<Propagation> {
    let find = |n: &str| PROPAGATIONS.iter().find(|(p, _)| *p == n).map(|(_, f)| *f);
    if let Some(flag) = find(name) {
        return Some(Propagation {
            flag,
            recursive: false,
        });
    }
    let flag = find(name.strip_prefix('r')?)?;
    Some(Propagation {
        flag,
        recursive: true,
    })
}

fn sb_flag(name: &str) -> Option<&'static str> {
    SB_FLAGS.iter().find(|f| **f == name).copied()
}

fn special(name: &str) -> Option<Special> {
    SPECIAL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

impl MountOptions {
    /// Parses an options list. Unknown words are filesystem data, as with
    /// mount(8).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
        let mut out = MountOptions::default();
        let (mut atime, mut recursive_atime) = (Atime::default(), Atime::default());
        for opt in options {
            let opt = opt.as_ref();
            if let Some(op) = attr_op(opt) {
                apply(&mut out.attr, &mut atime, op);
                continue;
            }
            if let Some(op) = opt.strip_prefix('r').and_then(attr_op) {
                apply(&mut out.recursive_attr, &mut recursive_atime, op);
                continue;
            }
            if let Some(p) = propagation(opt) {
                out.propagation.push(p);
                continue;
            }
            if let Some(f) = sb_flag(opt) {
                out.sb_flags.push(f);
                continue;
            }
            if let Some(s) = special(opt) {
                match s {
                    Special::Bind { recursive } => {
                        out.bind = Some(recursive || out.bind.unwrap_or(false))
                    }
                    Special::Remount => out.remount = true,
                    Special::Idmap { recursive } => {
                        out.idmap = Some(recursive || out.idmap.unwrap_or(false))
                    }
                    Special::TmpCopyUp => out.tmpcopyup = true,
                    Special::SrcNoFollow => out.src_nofollow = true,
                    Special::DestNoFollow => out.dest_nofollow = true,
                    Special::Ignored => {}
                }
                continue;
            }
            match opt {
                // `x-*` options are for userspace helpers.
                _ if opt.starts_with("x-") => {}
                "" => {}
                _ => {
                    let (key, value) = match opt.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (opt.to_string(), None),
                    };
                    out.data.push((key, value));
                }
            }
        }
        set_atime(&mut out.attr, atime);
        set_atime(&mut out.recursive_attr, recursive_atime);
        out
    }

    /// These options for a recursive bind of a host tree made in place of a
    /// filesystem the kernel refused: the mount's own attributes go to
    /// every submount as well.
    pub fn as_rbind(&self) -> MountOptions {
        let atime = libc::MOUNT_ATTR__ATIME;
        let mut out = self.clone();
        out.bind = Some(true);
        let r = &mut out.recursive_attr;
        r.set |= self.attr.set & !atime;
        r.clear &= !(self.attr.set & !atime);
        if self.attr.clear & atime != 0 {
            r.set = (r.set & !atime) | (self.attr.set & atime);
            r.clear |= atime;
        }
        out
    }

    /// The attributes a brand-new filesystem mount is created with
    /// (`fsmount` takes only bits to set, and one atime mode: the mount's
    /// own, else the recursive one, which is applied again after).
    pub fn fsmount_flags(&self) -> u64 {
        let atime = libc::MOUNT_ATTR__ATIME;
        let mode = if self.attr.clear & atime != 0 {
            self.attr.set
        } else {
            self.recursive_attr.set
        } & atime;
        (self.attr.set | self.recursive_attr.set) & !(libc::MOUNT_ATTR_IDMAP | atime) | mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_default_dev_pts() {
        let o = MountOptions::parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(
            o.attr.set,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC
        );
        assert_eq!(
            o.data,
            vec![
                ("newinstance".into(), None),
                ("ptmxmode".into(), Some("0666".into())),
                ("mode".into(), Some("0620".into())),
                ("gid".into(), Some("5".into())),
            ]
        );
        assert_eq!(o.bind, None);
    }

    #[test]
    fn later_options_win() {
        let o = MountOptions::parse(&["ro", "rw", "nodev", "dev"]);
        assert_eq!(o.attr.set, 0);
        assert_eq!(
            o.attr.clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV
        );
    }

    #[test]
    fn recursive_attributes() {
        let o = MountOptions::parse(&["rbind", "rro", "rnosuid", "ro"]);
        assert_eq!(o.bind, Some(true));
        assert_eq!(
            o.recursive_attr.set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID
        );
        assert_eq!(o.attr.set, libc::MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn propagation_in_order() {
        let o = MountOptions::parse(&["bind", "rprivate", "shared"]);
        assert_eq!(o.bind, Some(false));
        assert_eq!(
            o.propagation,
            vec![
                Propagation {
                    flag: libc::MS_PRIVATE,
                    recursive: true
                },
                Propagation {
                    flag: libc::MS_SHARED,
                    recursive: false
                },
            ]
        );
    }

    #[test]
    fn atime_modes() {
        let o = MountOptions::parse(&["noatime"]);
        assert_eq!(
            o.attr.set & libc::MOUNT_ATTR__ATIME,
            libc::MOUNT_ATTR_NOATIME
        );
        assert_eq!(
            o.attr.clear & libc::MOUNT_ATTR__ATIME,
            libc::MOUNT_ATTR__ATIME
        );
        let o = MountOptions::parse(&["strictatime", "nostrictatime"]);
        assert_eq!(
            o.attr.set & libc::MOUNT_ATTR__ATIME,
            libc::MOUNT_ATTR_RELATIME
        );
        let o = MountOptions::parse(&["rnoatime"]);
        assert_eq!(o.recursive_attr.set, libc::MOUNT_ATTR_NOATIME);
    }

    fn atime_of(options: &[&str]) -> u64 {
        MountOptions::parse(options).attr.set & libc::MOUNT_ATTR__ATIME
    }

    /// What runc 1.1.5 gets for a tmpfs with these options (its flags go to
    /// mount(2), where strictatime beats noatime beats relatime).
    #[test]
    fn atime_as_runc() {
        let (rel, no, strict) = (
            libc::MOUNT_ATTR_RELATIME,
            libc::MOUNT_ATTR_NOATIME,
            libc::MOUNT_ATTR_STRICTATIME,
        );
        assert_eq!(atime_of(&["noatime", "norelatime"]), no);
        assert_eq!(atime_of(&["strictatime", "atime"]), strict);
        assert_eq!(atime_of(&["noatime", "atime"]), rel);
        assert_eq!(atime_of(&["strictatime", "noatime"]), strict);
        assert_eq!(atime_of(&["noatime", "strictatime"]), strict);
        assert_eq!(atime_of(&["noatime", "relatime"]), no);
        assert_eq!(atime_of(&["relatime", "noatime"]), no);
        assert_eq!(atime_of(&["strictatime", "nostrictatime"]), rel);
    }

    #[test]
    fn fsmount_gets_one_atime_mode() {
        let o = MountOptions::parse(&["strictatime", "rnoatime"]);
        let atime = o.fsmount_flags() & libc::MOUNT_ATTR__ATIME;
        assert_eq!(atime, libc::MOUNT_ATTR_STRICTATIME);
        let o = MountOptions::parse(&["rnoatime", "nodev"]);
        assert_eq!(
            o.fsmount_flags(),
            libc::MOUNT_ATTR_NOATIME | libc::MOUNT_ATTR_NODEV
        );
    }

    #[test]
    fn rbind_in_place_keeps_a_valid_atime() {
        let o = MountOptions::parse(&["ro", "noatime", "rrw"]).as_rbind();
        assert_eq!(o.bind, Some(true));
        let r = o.recursive_attr;
        assert_eq!(r.set, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOATIME);
        assert_eq!(r.clear, libc::MOUNT_ATTR__ATIME);
    }

    #[test]
    fn superblock_flags_and_data() {
        let o = MountOptions::parse(&[
            "sync",
            "dirsync",
            "size=64k",
            "x-systemd.automount",
            "defaults",
        ]);
        assert_eq!(o.sb_flags, vec!["sync", "dirsync"]);
        assert_eq!(o.data, vec![("size".into(), Some("64k".into()))]);
    }

    #[test]
    fn rw_alone_is_not_recursive_and_remount_idmap() {
        let o = MountOptions::parse(&["remount", "ridmap", "tmpcopyup"]);
        assert!(o.remount && o.tmpcopyup);
        let nofollow = MountOptions::parse(&["bind", "src-nofollow", "dest-nofollow"]);
        assert!(nofollow.src_nofollow && nofollow.dest_nofollow && nofollow.data.is_empty());
        assert_eq!(o.idmap, Some(true));
        // "rshared" is propagation, not "r" + "shared" attribute.
        let o = MountOptions::parse(&["rshared"]);
        assert!(o.recursive_attr.is_empty());
        assert_eq!(
            o.propagation[0],
            Propagation {
                flag: libc::MS_SHARED,
                recursive: true
            }
        );
    }
}
