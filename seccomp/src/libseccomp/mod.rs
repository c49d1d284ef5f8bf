//! libseccomp, the library runc and crun compile profiles with, driven
//! through a small C helper (`helper.c`) that the tests build with the
//! system C compiler: the tests compare skiff's tables and programs with
//! its. The helper is a separate process because skiff's test binaries are
//! linked statically and libseccomp is a shared library.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// The helper binary, built once per test process, or why it could not be.
fn helper_binary() -> Result<&'static PathBuf, &'static str> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/libseccomp/helper.c");
            // Built under a private name, then renamed: test processes
            // running at once never run a half-written binary.
            let dir = PathBuf::from(env!("OUT_DIR"));
            let out = dir.join("libseccomp-helper");
            let tmp = dir.join(format!("libseccomp-helper.{}", std::process::id()));
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
            let built = Command::new(&cc)
                .args(["-O1", "-Wall", "-Werror", "-o"])
                .arg(&tmp)
                .arg(src)
                .arg("-lseccomp")
                .output()
                .map_err(|e| format!("running {cc}: {e}"))?;
            if !built.status.success() {
                return Err(format!(
                    "building the libseccomp helper (apt install libseccomp-dev): {}",
                    String::from_utf8_lossy(&built.stderr).trim()
                ));
            }
            std::fs::rename(&tmp, &out).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
            Ok(out)
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Skips the calling test loudly when the helper cannot be built, and
/// fails it instead under SKIFF_REQUIRE_ALL.
macro_rules! helper_or_skip {
    () => {
        match $crate::libseccomp::Helper::start() {
            Ok(h) => h,
            Err(why) => {
                assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
                eprintln!("SKIPPED {}: {}", module_path!(), why);
                return;
            }
        }
    };
}
pub(crate) use helper_or_skip;

/// One running helper.
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why libseccomp gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A negative errno: libseccomp refused (runc and crun then refuse the
    /// container).
    Refused(i32),
    /// No answer within `ANSWER_TIME`: libseccomp looped (or crashed).
    NoAnswer,
}

/// What libseccomp did with a rule it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAdded {
    Ok,
    /// libseccomp does not know the syscall name.
    Unknown,
}

/// One condition as `seccomp_rule_add_array` takes it.
#[derive(Debug, Clone, Copy)]
pub struct ArgCmp {
    pub arg: u32,
    /// libseccomp's `enum scmp_compare` (1 NE ... 7 MASKED_EQ).
    pub op: u32,
    pub a: u64,
    pub b: u64,
}

/// How long one answer may take. Each takes well under a millisecond; the
/// margin is for a loaded machine.
const ANSWER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

impl Helper {
    pub fn start() -> Result<Helper, String> {
        let bin = helper_binary()?;
        let mut child = Command::new(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Helper {
            child,
            stdin,
            stdout,
        })
    }

    fn ask(&mut self, request: &str) -> Result<String, Failure> {
        writeln!(self.stdin, "{request}").map_err(|_| Failure::NoAnswer)?;
        self.line()
    }

    fn line(&mut self) -> Result<String, Failure> {
        if self.stdout.buffer().is_empty() {
            let mut fd = libc::pollfd {
                fd: self.stdout.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut fd, 1, ANSWER_TIME.as_millis() as libc::c_int) };
            if ready <= 0 {
                return Err(Failure::NoAnswer);
            }
        }
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Ok(line.trim_end().to_string()),
            _ => Err(Failure::NoAnswer),
        }
    }

    /// `(number, name)` for every number in `lo..hi` libseccomp names on
    /// `arch` (an audit value, or SCMP_ARCH_X32's); negative numbers are
    /// libseccomp's placeholders for syscalls an arch lacks.
    pub fn names(&mut self, arch: u32, lo: i64, hi: i64) -> Vec<(i64, String)> {
        let mut line = self.ask(&format!("names {arch} {lo} {hi}"));
        let mut out = Vec::new();
        loop {
            let l = line.expect("an answer from the libseccomp helper");
            if l == "end" {
                return out;
            }
            let (nr, name) = l.split_once(' ').expect("NR NAME");
            out.push((nr.parse().expect("number"), name.to_string()));
            line = self.line();
        }
    }

    /// Starts a filter (`seccomp_init` with `default`, then
    /// `seccomp_arch_add` for each of `arches`).
    pub fn filter(&mut self, default: u32, optimize: bool, arches: &[u32]) -> Result<(), Failure> {
        let arches: Vec<String> = arches.iter().map(u32::to_string).collect();
        let answer = self.ask(&format!(
            "filter {default} {} {}",
            u8::from(optimize),
            arches.join(" ")
        ))?;
        parse_status(&answer).map(|_| ())
    }

    /// Adds a rule to the current filter.
    pub fn rule(
        &mut self,
        action: u32,
        name: &str,
        conds: &[ArgCmp],
    ) -> Result<RuleAdded, Failure> {
        let mut req = format!("rule {action} {name} {}", conds.len());
        for c in conds {
            req.push_str(&format!(" {} {} {} {}", c.arg, c.op, c.a, c.b));
        }
        let known = parse_status(&self.ask(&req)?)?;
        Ok(if known {
            RuleAdded::Ok
        } else {
            RuleAdded::Unknown
        })
    }

    /// The current filter's program, as `seccomp_export_bpf` writes it.
    pub fn export(&mut self) -> Result<Vec<libc::sock_filter>, Failure> {
        let answer = self.ask("export")?;
        let Some(n) = answer.strip_prefix("bpf ") else {
            return Err(parse_status(&answer).expect_err("bpf or error"));
        };
        let n: usize = n.parse().expect("instruction count");
        (0..n)
            .map(|_| {
                let line = self.line()?;
                let f: Vec<u32> = line
                    .split(' ')
                    .map(|x| x.parse().expect("number"))
                    .collect();
                Ok(libc::sock_filter {
                    code: f[0] as u16,
                    jt: f[1] as u8,
                    jf: f[2] as u8,
                    k: f[3],
                })
            })
            .collect()
    }
}

/// `ok` -> true, `unknown` -> false, `error RC` -> refused.
fn parse_status(answer: &str) -> Result<bool, Failure> {
    match answer {
        "ok" => Ok(true),
        "unknown" => Ok(false),
        _ => Err(Failure::Refused(
            answer
                .strip_prefix("error ")
                .and_then(|rc| rc.parse().ok())
                .unwrap_or_else(|| {
                    panic!("unexpected answer from the libseccomp helper: {answer}")
                }),
        )),
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Killed rather than asked to stop: it may be stuck in libseccomp.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
