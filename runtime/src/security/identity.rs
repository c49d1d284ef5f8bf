//! The process's user: supplementary groups, gid, uid, and the HOME it
//! gets when the config sets none (from the container's own /etc/passwd;
//! a runtime never uses the host's NSS).

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

/// Switches to the configured user. Capabilities survive the switch
/// (PR_SET_KEEPCAPS) so the final capset can grant what the config asks.
pub fn switch_user(user: &User) -> Result<(), (&'static str, Errno)> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
        return Err(("prctl(PR_SET_KEEPCAPS)", Errno::last()));
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // A user namespace whose setgroups is denied cannot have groups;
        // with none asked for there is nothing lost.
        Err(Errno::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(("process.user.additionalGids: setgroups", e)),
    }
    // EINVAL: an id the user namespace does not map (a rootless
    // container maps few).
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| match e {
        Errno::EINVAL => (
            "process.user.gid: setresgid: not mapped in the container's user namespace",
            e,
        ),
        e => ("process.user.gid: setresgid", e),
    })?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| match e {
        Errno::EINVAL => (
            "process.user.uid: setresuid: not mapped in the container's user namespace",
            e,
        ),
        e => ("process.user.uid: setresuid", e),
    })?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } < 0 {
        return Err(("prctl(PR_SET_KEEPCAPS)", Errno::last()));
    }
    Ok(())
}

/// The home directory of `uid` in a passwd file's text.
pub fn home_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 6 && fields[2].parse::<u32>().ok() == Some(uid) {
            Some(fields[5].to_string())
        } else {
            None
        }
    })
}

/// Adds `HOME` to `env` when missing, as runc and crun do: the user's home
/// from the container's /etc/passwd, else `/`. Call after pivot_root.
pub fn ensure_home(env: &mut Vec<String>, uid: u32) {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| home_from_passwd(&p, uid))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/sh\n\nbad line\nsvc:x:1000:1000::/home/svc:/bin/sh\n";
        assert_eq!(home_from_passwd(p, 0).as_deref(), Some("/root"));
        assert_eq!(home_from_passwd(p, 1000).as_deref(), Some("/home/svc"));
        assert_eq!(home_from_passwd(p, 5), None);
    }

    #[test]
    fn home_is_kept_when_set() {
        let mut env = vec!["HOME=/x".to_string()];
        ensure_home(&mut env, 0);
        assert_eq!(env, vec!["HOME=/x".to_string()]);
    }
}
