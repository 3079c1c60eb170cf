//! The live page (`/ui`) in a real browser: Debian's chromium, headless,
//! driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! JSON messages ended by a NUL byte on file descriptors 3 and 4, no
//! websocket and no crate needed), against the real daemon on the local
//! Swarm while real load scales the demo service out.
//!
//! What it proves: the page, opened before the load, shows the scale-out
//! (the card's replica count and the applied decision in its log) within a
//! second of the spec change Docker accepted (the audit record's time), and
//! draws the service's thresholds, replicas and decisions. It saves a
//! screenshot (`LIVE_SCREENSHOT=path`, else the temp folder) for the docs.
//!
//! Root and a Swarm manager are needed (else it says why it skips);
//! chromium too: CI installs it (examples/setup.sh), and under `CI` a
//! missing browser fails rather than skips.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Daemon, Load, Service, unix_ms, wait_until};
use serde_json::{Value, json};

/// A headless chromium we started, spoken to over its debugging pipe.
struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    /// The page's session (flat mode: every page command carries it).
    session: String,
    _profile: tempfile::TempDir,
}

/// The browser to use: `CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file())
}

/// A pipe as (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded; both descriptors are new and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Start chromium headless with an empty profile and open `url`.
    fn open(binary: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // Chromium reads commands on fd 3 and writes answers on fd 4.
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let (child_in, child_out) = (to_read.as_raw_fd(), from_write.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=720,540",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork
        // and exec. The two ends are first copied above 10 so that moving
        // one onto 3 or 4 cannot overwrite the other; dup2 clears
        // O_CLOEXEC on the copies the browser keeps.
        unsafe {
            command.pre_exec(move || {
                let high_in = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let high_out = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if high_in < 0 || high_out < 0 || libc::dup2(high_in, 3) < 0 || libc::dup2(high_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        drop((to_read, from_write));
        let (send, answers) = mpsc::channel();
        let reader = File::from(from_read);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && send.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: File::from(to_write),
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }), false);
        let target = target["targetId"].as_str().expect("a target id").to_string();
        let attached = browser.call("Target.attachToTarget", json!({ "targetId": target, "flatten": true }), false);
        browser.session = attached["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    /// One DevTools command; its result (panics on an error answer).
    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("writing to the browser");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.answers.recv_timeout(left).unwrap_or_else(|_| panic!("no answer to {method} in 30 s"));
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression on the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }), true);
        result["result"]["value"].clone()
    }

    /// The page as a PNG, saved at `path`.
    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }), true);
        let png = base64(shot["data"].as_str().expect("png data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ours, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (what DevTools sends a screenshot in).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {}", c as char),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_devtools_sends() {
    assert_eq!(base64("aGVsbG8="), b"hello");
    assert_eq!(base64("aGk="), b"hi");
    assert_eq!(base64("YWJj"), b"abc");
}

/// The card of `service` as the page shows it now: (replicas, decisions'
/// text, thresholds drawn, replica path drawn).
fn card(browser: &mut Browser, service: &str) -> Option<(String, String, u64, bool)> {
    let value = browser.eval(&format!(
        r#"(() => {{
            const c = document.querySelector('[data-service="{service}"]');
            if (!c) return null;
            return [c.dataset.replicas, c.querySelector('.decisions').textContent,
                    c.querySelectorAll('line.threshold').length,
                    !!c.querySelector('path.replicas[d^="M"]')];
        }})()"#
    ));
    let v = value.as_array()?;
    Some((
        v[0].as_str()?.to_string(),
        v[1].as_str().unwrap_or_default().to_string(),
        v[2].as_u64().unwrap_or(0),
        v[3].as_bool().unwrap_or(false),
    ))
}

#[test]
fn the_page_shows_a_scale_out_within_a_second_of_the_spec_change() {
    let Some(_serial) = common::local_swarm("live-") else { return };
    let Some(binary) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium (examples/setup.sh does)");
        common::skip("no chromium on the PATH (apt-get install chromium, or set CHROMIUM)");
        return;
    };
    common::shipped_policies();
    let labels = [
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", "3"),
        ("autoscale.cpu.upper", "0.6"),
        ("autoscale.cpu.lower", "0.15"),
        ("autoscale.cooldown.up", "1s"),
        ("autoscale.cooldown.down", "60s"),
    ];
    let web = Service::spec("live-web").port(18095).labels(&labels).create();
    let daemon = Daemon::builder().start();
    daemon.wait_autoscaled(&web.name);

    let url = format!("http://{}:{}/ui", daemon.addr, daemon.metrics_port);
    let mut browser = Browser::open(&binary, &url);
    wait_until("the page to show the service at 1 replica", Duration::from_secs(20), || {
        card(&mut browser, &web.name).is_some_and(|(replicas, ..)| replicas == "1")
    });

    let load = Load::start(web.port, 4);
    let mut shown = None;
    wait_until("the page to show the scale-out", Duration::from_secs(90), || {
        let out = card(&mut browser, &web.name).is_some_and(|(replicas, ..)| replicas.parse::<u32>().unwrap_or(0) >= 2);
        if out {
            shown = Some(unix_ms());
        }
        out
    });
    let shown = shown.expect("seen");
    let applied = daemon.audit_for(&web.name, "applied");
    let first = applied.first().expect("an applied scale-out in the audit log");
    let spec_changed = first["time_unix_ms"].as_u64().expect("time");
    let lag = shown.saturating_sub(spec_changed);
    eprintln!("live page: spec changed -> page shows {} replicas after {lag} ms (polls every 500 ms)", first["to"]);
    assert!(lag <= 1000, "the page showed the scale-out {lag} ms after the spec change (at most 1 s)");

    // The decision is in the card's log, with what the chart needs drawn.
    let to = first["to"].as_u64().expect("to");
    wait_until("the applied decision in the page's log", Duration::from_secs(5), || {
        card(&mut browser, &web.name).is_some_and(|(_, log, ..)| log.contains(&format!("applied 1 \u{2192} {to}")))
    });
    let (_, log, thresholds, replicas_drawn) = card(&mut browser, &web.name).expect("the card");
    assert!(log.contains("cpu.upper"), "the decision's reason names its threshold: {log}");
    assert_eq!(thresholds, 2, "cpu.upper and cpu.lower drawn as lines");
    assert!(replicas_drawn, "the replicas line is drawn");

    // The picture for the docs: the last minute, once the service reached
    // its max (or 20 s of load passed).
    browser.eval("document.getElementById('window').value = '60'; refresh(); true");
    let more = Instant::now();
    while web.replicas() < 3 && more.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    let shot = std::env::var_os("LIVE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("swarm-autoscaler-live.png"));
    browser.screenshot(&shot);
    eprintln!("live page: screenshot at {}", shot.display());
    assert!(load.stop() > 0, "the load generator got no answers");
}
