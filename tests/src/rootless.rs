//! The unprivileged user the rootless suites run the engines as, made by
//! scripts/rootless-user.sh (idempotent), and commands run as that user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The test user.
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Makes the user on first use.
pub fn user() -> &'static User {
    static USER: OnceLock<User> = OnceLock::new();
    USER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rootless-user.sh");
        let out = Command::new(&script).output().unwrap();
        assert!(out.status.success(), "{script:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let f: Vec<&str> = text.split_whitespace().collect();
        User {
            name: f[0].to_string(),
            uid: f[1].parse().unwrap(),
            gid: f[2].parse().unwrap(),
            home: PathBuf::from(f[3]),
        }
    })
}

impl User {
    /// Makes `cmd` run as the user, in a login of its own whose
    /// XDG_RUNTIME_DIR is `runtime_dir`.
    pub fn login(&self, cmd: &mut Command, runtime_dir: &Path) {
        cmd.uid(self.uid)
            .gid(self.gid)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("XDG_RUNTIME_DIR", runtime_dir);
    }

    /// Gives `path` and everything below it to the user.
    pub fn own(&self, path: &Path) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown -R {}", path.display());
    }
}
