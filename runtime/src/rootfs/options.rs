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
}

/// What a single attribute option does.
enum AttrOp {
    Set(u64),
    Clear(u64),
    Atime(Option<u64>),
}

fn attr_op(name: &str) -> Option<AttrOp> {
    use AttrOp::*;
    Some(match name {
        "ro" => Set(libc::MOUNT_ATTR_RDONLY),
        "rw" => Clear(libc::MOUNT_ATTR_RDONLY),
        "nosuid" => Set(libc::MOUNT_ATTR_NOSUID),
        "suid" => Clear(libc::MOUNT_ATTR_NOSUID),
        "nodev" => Set(libc::MOUNT_ATTR_NODEV),
        "dev" => Clear(libc::MOUNT_ATTR_NODEV),
        "noexec" => Set(libc::MOUNT_ATTR_NOEXEC),
        "exec" => Clear(libc::MOUNT_ATTR_NOEXEC),
        "nodiratime" => Set(libc::MOUNT_ATTR_NODIRATIME),
        "diratime" => Clear(libc::MOUNT_ATTR_NODIRATIME),
        "nosymfollow" => Set(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "symfollow" => Clear(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "noatime" => Atime(Some(libc::MOUNT_ATTR_NOATIME)),
        "relatime" => Atime(Some(libc::MOUNT_ATTR_RELATIME)),
        "strictatime" => Atime(Some(libc::MOUNT_ATTR_STRICTATIME)),
        // These only undo an earlier option of the same list; the kernel
        // default (relatime) is what remains.
        "atime" | "norelatime" | "nostrictatime" => Atime(None),
        _ => return None,
    })
}

fn apply(attr: &mut MountAttr, op: AttrOp) {
    match op {
        AttrOp::Set(bit) => {
            attr.set |= bit;
            attr.clear &= !bit;
        }
        AttrOp::Clear(bit) => {
            attr.clear |= bit;
            attr.set &= !bit;
        }
        AttrOp::Atime(mode) => {
            attr.set &= !libc::MOUNT_ATTR__ATIME;
            attr.clear |= libc::MOUNT_ATTR__ATIME;
            attr.set |= mode.unwrap_or(libc::MOUNT_ATTR_RELATIME);
        }
    }
}

fn propagation(name: &str) -> Option<Propagation> {
    let (recursive, base) = match name.strip_prefix('r') {
        Some(b) if matches!(b, "shared" | "slave" | "private" | "unbindable") => (true, b),
        _ => (false, name),
    };
    let flag = match base {
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "private" => libc::MS_PRIVATE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some(Propagation { flag, recursive })
}

/// Superblock flags the VFS itself understands for any filesystem.
fn sb_flag(name: &str) -> Option<&'static str> {
    Some(match name {
        "sync" => "sync",
        "async" => "async",
        "dirsync" => "dirsync",
        "mand" => "mand",
        "nomand" => "nomand",
        "lazytime" => "lazytime",
        "nolazytime" => "nolazytime",
        _ => return None,
    })
}

impl MountOptions {
    /// Parses an options list. Unknown words are filesystem data, as with
    /// mount(8).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
        let mut out = MountOptions::default();
        for opt in options {
            let opt = opt.as_ref();
            if let Some(op) = attr_op(opt) {
                apply(&mut out.attr, op);
                continue;
            }
            if let Some(op) = opt.strip_prefix('r').and_then(attr_op) {
                apply(&mut out.recursive_attr, op);
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
            match opt {
                "bind" => out.bind = Some(out.bind.unwrap_or(false)),
                "rbind" => out.bind = Some(true),
                "remount" => out.remount = true,
                "idmap" => out.idmap = Some(out.idmap.unwrap_or(false)),
                "ridmap" => out.idmap = Some(true),
                "tmpcopyup" => out.tmpcopyup = true,
                // No kernel meaning: `defaults` is the empty set; `x-*` are
                // for userspace helpers; `(no)iversion` and `silent`/`loud`
                // are legacy MS_ flags the fd API has no use for.
                "defaults" | "iversion" | "noiversion" | "silent" | "loud" => {}
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
        out
    }

    /// The attributes a brand-new filesystem mount is created with
    /// (`fsmount` takes only bits to set).
    pub fn fsmount_flags(&self) -> u64 {
        (self.attr.set | self.recursive_attr.set) & !libc::MOUNT_ATTR_IDMAP
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
