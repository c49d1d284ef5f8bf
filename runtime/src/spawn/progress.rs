//! Where a child is in its setup, for the runtime to say when the child
//! dies or stalls without a word: a page shared across the fork, written
//! by the child with plain stores (no syscall, nothing a seccomp profile or
//! a dying process can lose) and read by the runtime.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};

/// A setup step, in the order the init takes them (exec children take a
/// subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Started,
    JoiningCgroup,
    AwaitingIdMaps,
    EnteringNamespaces,
    Mounting,
    RuntimeHooks,
    CreateContainerHooks,
    EnteringRoot,
    ProcessAttributes,
    AwaitingStart,
    StartContainerHooks,
    Executing,
}

impl Step {
    const ALL: [Step; 12] = [
        Step::Started,
        Step::JoiningCgroup,
        Step::AwaitingIdMaps,
        Step::EnteringNamespaces,
        Step::Mounting,
        Step::RuntimeHooks,
        Step::CreateContainerHooks,
        Step::EnteringRoot,
        Step::ProcessAttributes,
        Step::AwaitingStart,
        Step::StartContainerHooks,
        Step::Executing,
    ];

    /// What the child was doing, for "... while {step}".
    pub fn describe(self) -> &'static str {
        match self {
            Step::Started => "starting",
            Step::JoiningCgroup => "joining its cgroup",
            Step::AwaitingIdMaps => "waiting for its id maps and cgroup",
            Step::EnteringNamespaces => "entering its namespaces",
            Step::Mounting => "mounting the rootfs",
            Step::RuntimeHooks => "waiting for prestart/createRuntime hooks",
            Step::CreateContainerHooks => "running createContainer hooks",
            Step::EnteringRoot => "entering the rootfs",
            Step::ProcessAttributes => "setting up the process (rlimits, user, capabilities)",
            Step::AwaitingStart => "waiting for start",
            Step::StartContainerHooks => "running startContainer hooks",
            Step::Executing => "executing the container process",
        }
    }

    /// Hooks carry their own timeouts (or none, by the spec's choice), so
    /// the runtime's bound on a step does not apply while they run.
    pub fn runs_hooks(self) -> bool {
        matches!(
            self,
            Step::RuntimeHooks | Step::CreateContainerHooks | Step::StartContainerHooks
        )
    }
}

/// The shared page.
pub struct Progress {
    page: NonNull<AtomicU8>,
}

const PAGE: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(n) => n,
    None => unreachable!(),
};

impl Progress {
    /// Maps the page; call before the fork.
    pub fn new() -> Result<Progress, Errno> {
        // SAFETY: a fresh anonymous mapping, owned by this value until drop.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                PAGE,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )?
        };
        Ok(Progress { page: ptr.cast() })
    }

    /// Records the step the child has reached (child side).
    pub fn set(&self, step: Step) {
        // SAFETY: the page is mapped for as long as self lives.
        unsafe { self.page.as_ref() }.store(step as u8, Ordering::Release);
    }

    /// The last step the child recorded (runtime side).
    pub fn get(&self) -> Step {
        // SAFETY: as in `set`.
        let raw = unsafe { self.page.as_ref() }.load(Ordering::Acquire);
        Step::ALL
            .get(raw as usize)
            .copied()
            .unwrap_or(Step::Started)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        let _ = unsafe { nix::sys::mman::munmap(self.page.cast(), PAGE.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_step_is_seen_by_the_parent() {
        let progress = Progress::new().unwrap();
        assert_eq!(progress.get(), Step::Started);
        // SAFETY: the child only stores and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                progress.set(Step::Mounting);
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(progress.get(), Step::Mounting);
            }
        }
    }

    #[test]
    fn steps_round_trip() {
        for (i, step) in Step::ALL.iter().enumerate() {
            assert_eq!(*step as usize, i);
        }
    }
}
