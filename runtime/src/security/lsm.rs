//! AppArmor profiles and SELinux labels for the process, applied at exec
//! through the private procfs. Asking for one on a host where that LSM is
//! not enabled is an error: silently running unconfined would be worse.

use crate::procfs::{PrivateProc, ProcError};

/// Why an LSM setting could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("process.apparmorProfile {0:?}: AppArmor is not enabled on this host")]
    AppArmorDisabled(String),
    #[error("process.selinuxLabel {0:?}: SELinux is not enabled on this host")]
    SelinuxDisabled(String),
    #[error("process.apparmorProfile {profile:?}: {source}")]
    AppArmor { profile: String, source: ProcError },
    #[error("process.selinuxLabel {label:?}: {source}")]
    Selinux { label: String, source: ProcError },
}

/// True when AppArmor is enabled in the running kernel.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// True when SELinux is enabled (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Which LSMs are usable, detected in the parent (the child may no longer
/// see the host's /sys).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lsms {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Lsms {
    pub fn detect(wanted: bool) -> Lsms {
        if !wanted {
            return Lsms::default();
        }
        Lsms {
            apparmor: apparmor_enabled(),
            selinux: selinux_enabled(),
        }
    }
}

/// Checks the request against the host before anything is created.
pub fn check(apparmor: Option<&str>, selinux: Option<&str>, lsms: Lsms) -> Result<(), LsmError> {
    if let Some(p) = apparmor.filter(|p| !p.is_empty()) {
        if !lsms.apparmor {
            return Err(LsmError::AppArmorDisabled(p.to_string()));
        }
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        if !lsms.selinux {
            return Err(LsmError::SelinuxDisabled(l.to_string()));
        }
    }
    Ok(())
}

/// Arranges for the next execve to enter the profile / label. The private
/// procfs belongs to our pid namespace, so getpid() names us there; the
/// process is single-threaded, so its attributes are the thread's.
pub fn apply_on_exec(
    proc: &PrivateProc,
    apparmor: Option<&str>,
    selinux: Option<&str>,
) -> Result<(), LsmError> {
    if let Some(profile) = apparmor.filter(|p| !p.is_empty()) {
        let value = format!("exec {profile}");
        // Newer kernels stack LSMs and give AppArmor its own directory.
        let me = nix::unistd::getpid();
        proc.write(&format!("{me}/attr/apparmor/exec"), value.as_bytes())
            .or_else(|_| proc.write(&format!("{me}/attr/exec"), value.as_bytes()))
            .map_err(|source| LsmError::AppArmor {
                profile: profile.to_string(),
                source,
            })?;
    }
    if let Some(label) = selinux.filter(|l| !l.is_empty()) {
        proc.write(
            &format!("{}/attr/exec", nix::unistd::getpid()),
            label.as_bytes(),
        )
        .map_err(|source| LsmError::Selinux {
            label: label.to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_lsm_is_a_clear_error() {
        let none = Lsms::default();
        assert_eq!(
            check(Some("docker-default"), None, none)
                .unwrap_err()
                .to_string(),
            "process.apparmorProfile \"docker-default\": AppArmor is not enabled on this host"
        );
        assert!(check(None, Some("system_u:system_r:container_t:s0"), none).is_err());
        assert!(check(Some(""), Some(""), none).is_ok());
        let both = Lsms {
            apparmor: true,
            selinux: true,
        };
        assert!(check(Some("p"), Some("l"), both).is_ok());
    }
}
