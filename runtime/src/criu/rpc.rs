//! CRIU's RPC messages (`images/rpc.proto`, proto2), written and read by
//! hand. skiff sends one request per `criu swrk` and reads a handful of
//! fields back; a generated protobuf binding would carry a general
//! encoder, decoder and descriptors into the binary for that. Only the
//! fields skiff sets are declared, with CRIU's field numbers.

/// `criu_req_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    Dump = 1,
    Restore = 2,
    PreDump = 4,
    Notify = 6,
    Version = 10,
}

/// `criu_cg_mode`, as `--manage-cgroups-mode` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgMode {
    Ignore = 0,
    Soft = 3,
    Full = 4,
    Strict = 5,
}

/// The `criu_opts` fields skiff uses.
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub images_dir_fd: i32,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub ext_unix_sk: bool,
    pub tcp_established: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub log_level: i32,
    pub log_file: String,
    pub notify_scripts: bool,
    pub root: Option<String>,
    pub parent_img: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub work_dir_fd: Option<i32>,
    pub manage_cgroups: bool,
    /// `(controller, path)`; no controller: every controller not named.
    pub cg_root: Vec<(Option<String>, String)>,
    pub rst_sibling: bool,
    /// `(key, fd in the criu process)`.
    pub inherit_fd: Vec<(String, i32)>,
    pub manage_cgroups_mode: Option<CgMode>,
    pub external: Vec<String>,
    /// The cgroup CRIU freezes the tree through (and puts back as found).
    pub freeze_cgroup: Option<String>,
    pub empty_ns: u32,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    pub orphan_pts_master: bool,
    pub config_file: Option<String>,
}

/// A `criu_req`.
#[derive(Debug, Clone)]
pub struct Req {
    pub kind: ReqType,
    pub opts: Option<Opts>,
    pub notify_success: bool,
}

/// The `criu_resp` fields skiff reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resp {
    pub kind: u64,
    pub success: bool,
    /// `restore.pid`.
    pub restored_pid: Option<i32>,
    /// `notify.script`: the notification's name.
    pub notify_script: Option<String>,
    /// The pid a notification is about (the restored root task's).
    pub notify_pid: Option<i32>,
    pub cr_errno: Option<i32>,
    pub cr_errmsg: Option<String>,
    /// `version.major_number`, `minor_number`, `sublevel`.
    pub version: Option<(i32, i32, i32)>,
}

/// A response that is not valid protobuf.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed response from criu")]
pub struct Malformed;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

/// int32 as protobuf writes it: a negative value sign-extends to 64 bits.
fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_uint(out, field, i64::from(v) as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Optional bools are written only when true: false is CRIU's default.
fn put_flag(out: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        put_uint(out, field, 1);
    }
}

impl Opts {
    fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        put_int32(&mut o, 1, self.images_dir_fd);
        if let Some(pid) = self.pid {
            put_int32(&mut o, 2, pid);
        }
        put_flag(&mut o, 3, self.leave_running);
        put_flag(&mut o, 4, self.ext_unix_sk);
        put_flag(&mut o, 5, self.tcp_established);
        put_flag(&mut o, 7, self.shell_job);
        put_flag(&mut o, 8, self.file_locks);
        put_int32(&mut o, 9, self.log_level);
        put_bytes(&mut o, 10, self.log_file.as_bytes());
        put_flag(&mut o, 12, self.notify_scripts);
        if let Some(root) = &self.root {
            put_bytes(&mut o, 13, root.as_bytes());
        }
        if let Some(parent) = &self.parent_img {
            put_bytes(&mut o, 14, parent.as_bytes());
        }
        put_flag(&mut o, 15, self.track_mem);
        put_flag(&mut o, 16, self.auto_dedup);
        if let Some(fd) = self.work_dir_fd {
            put_int32(&mut o, 17, fd);
        }
        put_flag(&mut o, 24, self.manage_cgroups);
        for (ctrl, path) in &self.cg_root {
            let mut m = Vec::new();
            if let Some(c) = ctrl {
                put_bytes(&mut m, 1, c.as_bytes());
            }
            put_bytes(&mut m, 2, path.as_bytes());
            put_bytes(&mut o, 25, &m);
        }
        put_flag(&mut o, 26, self.rst_sibling);
        for (key, fd) in &self.inherit_fd {
            let mut m = Vec::new();
            put_bytes(&mut m, 1, key.as_bytes());
            put_int32(&mut m, 2, *fd);
            put_bytes(&mut o, 27, &m);
        }
        if let Some(mode) = self.manage_cgroups_mode {
            put_uint(&mut o, 34, mode as u64);
        }
        for e in &self.external {
            put_bytes(&mut o, 37, e.as_bytes());
        }
        if self.empty_ns != 0 {
            put_uint(&mut o, 38, u64::from(self.empty_ns));
        }
        if let Some(dir) = &self.freeze_cgroup {
            put_bytes(&mut o, 44, dir.as_bytes());
        }
        put_flag(&mut o, 48, self.lazy_pages);
        if let Some(fd) = self.status_fd {
            put_int32(&mut o, 49, fd);
        }
        put_flag(&mut o, 50, self.orphan_pts_master);
        if let Some(file) = &self.config_file {
            put_bytes(&mut o, 51, file.as_bytes());
        }
        o
    }
}

impl Req {
    /// A request with no options (VERSION).
    pub fn bare(kind: ReqType) -> Req {
        Req {
            kind,
            opts: None,
            notify_success: false,
        }
    }

    /// The answer to a notification: carry on.
    pub fn notify_ack() -> Req {
        Req {
            kind: ReqType::Notify,
            opts: None,
            notify_success: true,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_uint(&mut out, 1, self.kind as u64);
        if let Some(opts) = &self.opts {
            put_bytes(&mut out, 2, &opts.encode());
        }
        put_flag(&mut out, 3, self.notify_success);
        out
    }
}

/// Reads protobuf fields: `(number, varint)` or `(number, bytes)`.
struct Fields<'a>(&'a [u8]);

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, Malformed> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Int(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                if len > self.0.len() {
                    return Err(Malformed);
                }
                let (bytes, rest) = self.0.split_at(len);
                self.0 = rest;
                Value::Bytes(bytes)
            }
            1 => Value::Bytes(self.skip(8)?),
            5 => Value::Bytes(self.skip(4)?),
            _ => return Err(Malformed),
        };
        Ok(Some((key >> 3, value)))
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (bytes, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(bytes)
    }
}

fn int(v: &Value<'_>) -> Result<u64, Malformed> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bytes(_) => Err(Malformed),
    }
}

fn int32(v: &Value<'_>) -> Result<i32, Malformed> {
    Ok(int(v)? as i64 as i32)
}

fn bytes<'a>(v: &Value<'a>) -> Result<&'a [u8], Malformed> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Int(_) => Err(Malformed),
    }
}

fn string(v: &Value<'_>) -> Result<String, Malformed> {
    Ok(String::from_utf8_lossy(bytes(v)?).into_owned())
}

/// The first int32 field numbered `want` in a sub-message.
fn sub_int32(buf: &[u8], want: u64) -> Result<Option<i32>, Malformed> {
    let mut f = Fields(buf);
    let mut found = None;
    while let Some((n, v)) = f.next()? {
        if n == want {
            found = Some(int32(&v)?);
        }
    }
    Ok(found)
}

impl Resp {
    pub fn decode(buf: &[u8]) -> Result<Resp, Malformed> {
        let mut r = Resp::default();
        let mut f = Fields(buf);
        while let Some((n, v)) = f.next()? {
            match n {
                1 => r.kind = int(&v)?,
                2 => r.success = int(&v)? != 0,
                4 => r.restored_pid = sub_int32(bytes(&v)?, 1)?,
                5 => {
                    let b = bytes(&v)?;
                    let mut nf = Fields(b);
                    while let Some((n, v)) = nf.next()? {
                        if n == 1 {
                            r.notify_script = Some(string(&v)?);
                        }
                    }
                    r.notify_pid = sub_int32(b, 2)?;
                }
                7 => r.cr_errno = Some(int32(&v)?),
                9 => r.cr_errmsg = Some(string(&v)?),
                10 => {
                    let b = bytes(&v)?;
                    r.version = Some((
                        sub_int32(b, 1)?.unwrap_or(0),
                        sub_int32(b, 2)?.unwrap_or(0),
                        sub_int32(b, 4)?.unwrap_or(0),
                    ));
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_request_and_answer() {
        assert_eq!(Req::bare(ReqType::Version).encode(), [0x08, 10]);
        // type VERSION, success, version { major 4, minor 2, sublevel 1 }.
        let resp = Resp::decode(&[0x08, 10, 0x10, 1, 0x52, 6, 0x08, 4, 0x10, 2, 0x20, 1]).unwrap();
        assert_eq!((resp.kind, resp.success), (10, true));
        assert_eq!(resp.version, Some((4, 2, 1)));
    }

    #[test]
    fn options_carry_their_field_numbers() {
        let opts = Opts {
            images_dir_fd: 5,
            pid: Some(300),
            leave_running: true,
            log_level: 4,
            log_file: "dump.log".into(),
            external: vec!["mnt[/a]:/a".into()],
            inherit_fd: vec![("pipe:[7]".into(), 1)],
            manage_cgroups_mode: Some(CgMode::Ignore),
            freeze_cgroup: Some("/sys/fs/cgroup/freezer/c1".into()),
            ..Opts::default()
        };
        let req = Req {
            kind: ReqType::Dump,
            opts: Some(opts),
            notify_success: false,
        }
        .encode();
        let mut f = Fields(&req);
        let mut seen = Vec::new();
        while let Some((n, v)) = f.next().unwrap() {
            if n == 2 {
                let mut o = Fields(bytes(&v).unwrap());
                while let Some((n, _)) = o.next().unwrap() {
                    seen.push(n);
                }
            }
        }
        // IGNORE is 0 and still written: absent means CRIU's default, SOFT.
        assert_eq!(seen, [1, 2, 3, 9, 10, 27, 34, 37, 44]);
    }

    #[test]
    fn notifications_errors_and_garbage() {
        // type NOTIFY, success, notify { script "post-restore", pid 42 }.
        let mut buf = vec![0x08, 6, 0x10, 1, 0x2a, 16, 0x0a, 12];
        buf.extend_from_slice(b"post-restore");
        buf.extend_from_slice(&[0x10, 42]);
        let resp = Resp::decode(&buf).unwrap();
        assert_eq!(resp.notify_script.as_deref(), Some("post-restore"));
        assert_eq!(resp.notify_pid, Some(42));
        let mut failed = vec![0x08, 1, 0x10, 0, 0x38, 2, 0x4a, 3];
        failed.extend_from_slice(b"bad");
        let resp = Resp::decode(&failed).unwrap();
        assert_eq!(
            (resp.success, resp.cr_errno, resp.cr_errmsg.as_deref()),
            (false, Some(2), Some("bad"))
        );
        assert_eq!(Resp::decode(&[0x0a, 9, 1]), Err(Malformed));
        assert_eq!(Resp::decode(&[0x80]), Err(Malformed));
    }
}
