//! The unprivileged user the rootless suites run the engines as, made by
//! scripts/rootless-user.sh (idempotent), and commands run as that user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::Workdir;

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

/// Podman's files for a rootless suite in `work`, for the user: vfs
/// storage (no mounts to make or leave behind) and a runtime directory of
/// its own (`work/xdg`).
pub fn configure_podman(work: &Workdir) {
    crate::engines::configure_podman(work);
    let w = work.path.display();
    std::fs::write(
        work.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{w}/root\"\nrunroot = \"{w}/runroot\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(work.join("xdg")).unwrap();
    std::fs::create_dir_all(work.join("volume")).unwrap();
    user().own(&work.path);
    std::fs::set_permissions(
        work.join("xdg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
}
