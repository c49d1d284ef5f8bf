//! Terminals: the pty master handed to a console socket in runc's format,
//! and the relay a foreground `run` does itself.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

use serde_json::json;
use support::{Bundle, Skiff};

#[test]
fn console_socket_receives_a_working_pty() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("tty");
    let sock_path = std::env::temp_dir().join(support::unique_id("console.sock"));
    let listener = UnixListener::bind(&sock_path).unwrap();
    let mut b = Bundle::new(&["sh"]);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    b.write();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        skiff::terminal::recv_fd(conn.as_fd()).unwrap()
    });
    skiff
        .run(&[
            "create",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--bundle",
            b.dir.to_str().unwrap(),
            &id,
        ])
        .ok();
    let (name, master) = accept.join().unwrap();
    assert!(name.starts_with("/dev/pts/"), "{name}");
    skiff.run(&["start", &id]).ok();
    let mut master = std::fs::File::from(master);
    master
        .write_all(
            b"tty; stty size; readlink /proc/self/fd/0; ls -l /dev/console | cut -c1; exit 3\n",
        )
        .unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(
        lines.contains(&name.as_str()),
        "tty should print {name}: {out}"
    );
    assert!(lines.contains(&"33 101"), "consoleSize applied: {out}");
    assert!(
        lines.contains(&"c"),
        "/dev/console is a character device: {out}"
    );
    skiff.wait_status(&id, "stopped");
    skiff.run(&["delete", &id]).ok();
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_file(sock_path);
}

#[test]
fn terminal_without_console_socket_is_refused_when_detached() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("notty");
    let mut b = Bundle::new(&["sh"]);
    b.config["process"]["terminal"] = json!(true);
    skiff
        .create(&b, &id)
        .fails_with(&["process.terminal", "--console-socket"]);
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn console_socket_without_terminal_is_refused() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("nottysock");
    let sock_path = std::env::temp_dir().join(support::unique_id("console.sock"));
    // Listening but never accepting: a caller waiting for a pty.
    let _listener = UnixListener::bind(&sock_path).unwrap();
    let b = Bundle::new(&["true"]);
    b.write();
    skiff
        .run(&[
            "create",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--bundle",
            b.dir.to_str().unwrap(),
            &id,
        ])
        .fails_with(&["process.terminal", "console socket"]);
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_file(sock_path);
}

#[test]
fn foreground_run_relays_the_pty() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("relay");
    let mut b = Bundle::new(&["sh", "-c", "tty; read line; echo got-$line; exit 5"]);
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let mut child = skiff
        .command(&["run", "--bundle", b.dir.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(
        out.contains("got-ping\r\n"),
        "pty line discipline output: {out:?}"
    );
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn foreground_exec_relays_the_pty() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-relay");
    let b = Bundle::new(&["sleep", "1000"]);
    b.write();
    skiff
        .run(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id])
        .ok();
    let mut child = skiff
        .command(&[
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "tty; read line; echo got-$line; exit 6",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pong\n").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(6), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(
        out.contains("got-pong\r\n"),
        "pty line discipline output: {out:?}"
    );
    skiff.run(&["delete", "--force", &id]).ok();
    support::assert_nothing_left(&skiff, &id);
}
