//! `skiff ps [--format table|json] ID [PS_ARGS...]`: the container's
//! processes, as a JSON array of host pids, or as the host's ps(1) table
//! (default `-ef`) cut down to the rows of those pids, as runc prints it.

use std::io::Write;

use crate::cli::{ListFormat, PsArgs};
use crate::container::Container;
use crate::error::Error;
use crate::state::Root;

pub fn run(root: &Root, args: &PsArgs) -> Result<i32, Error> {
    let container = Container::load(root, &args.id)?;
    let pids = container
        .own_cgroup("ps")?
        .procs()
        .map_err(crate::container::ContainerError::from)?;
    let out = match args.format {
        ListFormat::Json => serde_json::to_string(&pids).unwrap_or_default() + "\n",
        ListFormat::Table => table(&pids, &args.ps_args)?,
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(0)
}

fn table(pids: &[libc::pid_t], ps_args: &[String]) -> Result<String, Error> {
    let default = ["-ef".to_string()];
    let ps_args = if ps_args.is_empty() {
        &default[..]
    } else {
        ps_args
    };
    let output = std::process::Command::new("ps")
        .args(ps_args)
        .output()
        .map_err(|e| Error::Message(format!("running ps: {e}")))?;
    if !output.status.success() {
        return Err(Error::Message(format!(
            "ps {}: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    filter_table(&String::from_utf8_lossy(&output.stdout), pids)
}

/// Keeps the header and the rows whose PID column is one of `pids`.
fn filter_table(text: &str, pids: &[libc::pid_t]) -> Result<String, Error> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Message("couldn't find PID field in ps output".into()))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_matching_rows() {
        let text = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 420 42 sleep\n";
        assert_eq!(
            filter_table(text, &[42, 7]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sh\n"
        );
        assert!(filter_table("USER COMMAND\n", &[1]).is_err());
    }
}
