//! Socket activation (`sd_listen_fds`): when systemd (or anything speaking
//! its protocol) starts skiff with listening sockets at fds 3.., they are
//! passed on to the container process ahead of `--preserve-fds`, and the
//! process is told about them with `LISTEN_FDS` and `LISTEN_PID=1`, as
//! runc does.

/// How many activation fds this process was given: `LISTEN_FDS`, when
/// `LISTEN_PID` names this process (otherwise they were meant for another).
pub fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Tells the container process about `n` activation fds.
pub fn set_env(env: &mut Vec<String>, n: u32) {
    if n == 0 {
        return;
    }
    env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
    env.push(format!("LISTEN_FDS={n}"));
    env.push("LISTEN_PID=1".to_string());
}

/// A process with the activation fds announced.
pub fn announce(process: &mut oci_spec::runtime::Process, n: u32) {
    if n == 0 {
        return;
    }
    let mut env = process.env().clone().unwrap_or_default();
    set_env(&mut env, n);
    process.set_env(Some(env));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_stale_values() {
        let mut env = vec!["A=1".to_string(), "LISTEN_FDS=9".to_string()];
        set_env(&mut env, 2);
        assert_eq!(env, ["A=1", "LISTEN_FDS=2", "LISTEN_PID=1"]);
        let mut untouched = vec!["A=1".to_string()];
        set_env(&mut untouched, 0);
        assert_eq!(untouched, ["A=1"]);
    }
}
