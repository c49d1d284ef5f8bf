//! The last execve goes through a sealed trampoline (CVE-2019-5736).
//!
//! Until the init execs, `/proc/self/exe` is the skiff binary on the host.
//! A container image whose program (or `#!` interpreter) is a symlink to
//! `/proc/self/exe` would make that execve run the host's skiff as a
//! container process, which could then open its own exe and overwrite the
//! runtime on the host. Checking paths cannot close this (the kernel
//! resolves interpreters itself), so the init first execs a 160-byte static
//! ELF from a sealed memfd, and that program execs the real one: at that
//! moment `/proc/self/exe` is the sealed memfd, which nothing can write and
//! which is not a host file. The cost is one exec of a tiny image.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// x86-64 code: execve(argv[0], &argv[1], envp), exit_group(127) if that
/// fails. The trampoline's own argv[0] is the program path; argv[1..] are
/// the container process's argv.
#[cfg(target_arch = "x86_64")]
const CODE: [u8; 38] = [
    0x48, 0x8b, 0x7c, 0x24, 0x08, // mov rdi, [rsp+8]        argv[0]: path
    0x48, 0x8d, 0x74, 0x24, 0x10, // lea rsi, [rsp+16]       &argv[1]
    0x48, 0x8b, 0x04, 0x24, // mov rax, [rsp]                argc
    0x48, 0x8d, 0x54, 0xc4, 0x10, // lea rdx, [rsp+rax*8+16] envp
    0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59 (execve)
    0x0f, 0x05, // syscall
    0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
    0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
    0x0f, 0x05, // syscall
];

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The trampoline as a static ELF64 executable: one read+exec PT_LOAD
/// holding the whole file, and a PT_GNU_STACK asking for a non-executable
/// stack.
#[cfg(target_arch = "x86_64")]
pub fn elf() -> Vec<u8> {
    let code_offset = EHDR + 2 * PHDR;
    let total = (code_offset + CODE.len()) as u64;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    push_u16(&mut out, 2); // ET_EXEC
    push_u16(&mut out, 0x3e); // EM_X86_64
    push_u32(&mut out, 1); // EV_CURRENT
    push_u64(&mut out, BASE + code_offset as u64); // e_entry
    push_u64(&mut out, EHDR as u64); // e_phoff
    push_u64(&mut out, 0); // e_shoff
    push_u32(&mut out, 0); // e_flags
    push_u16(&mut out, EHDR as u16);
    push_u16(&mut out, PHDR as u16);
    push_u16(&mut out, 2); // e_phnum
    push_u16(&mut out, 0);
    push_u16(&mut out, 0);
    push_u16(&mut out, 0);
    // PT_LOAD, R+X, the whole file at BASE.
    push_u32(&mut out, 1);
    push_u32(&mut out, 5);
    push_u64(&mut out, 0);
    push_u64(&mut out, BASE);
    push_u64(&mut out, BASE);
    push_u64(&mut out, total);
    push_u64(&mut out, total);
    push_u64(&mut out, 0x1000);
    // PT_GNU_STACK, R+W.
    push_u32(&mut out, 0x6474_e551);
    push_u32(&mut out, 6);
    for _ in 0..5 {
        push_u64(&mut out, 0);
    }
    push_u64(&mut out, 16);
    out.extend_from_slice(&CODE);
    out
}

/// Writes the trampoline into a new memfd and seals it against any change.
#[cfg(target_arch = "x86_64")]
pub fn sealed() -> Result<OwnedFd, Errno> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let name = c"skiff-exec";
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a valid name; kernels before 6.3 do not
    // know MFD_EXEC (EINVAL) and make every memfd executable anyway.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 && Errno::last() == Errno::EINVAL {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fresh fd, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let image = elf();
    let written = nix::unistd::write(&fd, &image)?;
    if written != image.len() {
        return Err(Errno::EIO);
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on a memfd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Errno::last());
    }
    Ok(fd)
}

/// Execs `program` with `args` and `env` through the trampoline in `fd`.
pub fn exec(fd: &OwnedFd, program: &CString, args: &[CString], env: &[CString]) -> Errno {
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings
    // that outlive the call; an empty path with AT_EMPTY_PATH execs the fd.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_layout() {
        let image = elf();
        assert_eq!(&image[..4], b"\x7fELF");
        assert_eq!(image.len(), 64 + 2 * 56 + CODE.len());
        let entry = u64::from_le_bytes(image[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + 176);
    }

    #[test]
    fn trampoline_runs_the_program_with_its_argv0() {
        // Fork, exec `sh -c 'echo $0 $1'` through the trampoline, and read
        // what it printed.
        let fd = sealed().unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only dup2s, execs and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: plain dup2 in the forked child.
                unsafe { libc::dup2(write.as_raw_fd(), 1) };
                let program = CString::new("/bin/sh").unwrap();
                let script = "echo $X; tr '\\0' ' ' < /proc/$$/cmdline";
                let args = ["custom-argv0", "-c", script].map(|a| CString::new(a).unwrap());
                let env = [CString::new("X=env-ok").unwrap()];
                exec(&fd, &program, &args, &env);
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(99) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(write);
                let mut out = String::new();
                std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut out).unwrap();
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                assert!(out.starts_with("env-ok\ncustom-argv0 -c "), "{out:?}");
            }
        }
    }

    #[test]
    fn the_memfd_cannot_be_changed() {
        let fd = sealed().unwrap();
        assert_eq!(nix::unistd::write(&fd, b"x"), Err(Errno::EPERM));
        assert_eq!(nix::unistd::ftruncate(&fd, 0), Err(Errno::EPERM));
    }
}
