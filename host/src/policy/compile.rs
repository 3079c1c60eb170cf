//! Compiling a component in a child process, bounded in time and memory.
//!
//! Cranelift's time and memory grow with what a component declares, and a
//! crafted file (a "compile bomb") can make them large. The daemon therefore
//! re-executes its own binary (`/proc/self/exe`, so an upgraded or deleted
//! binary still works) with the hidden first argument [`SUBCOMMAND`]: the
//! child reads the component on stdin, compiles it with the same engine
//! settings and writes wasmtime's precompiled artifact on stdout. Before it
//! runs, the child gets `RLIMIT_AS` (memory), `RLIMIT_CPU` (a backstop for
//! the wall-clock limit), no core dumps, nice 19 (a compile bomb takes only
//! CPU nothing else wants), and `PR_SET_PDEATHSIG` so that it
//! dies with the daemon. The parent waits at most the time limit, and less
//! if the runtime is shut down, then kills it.
//!
//! The parent then loads the artifact with `Component::deserialize`, which
//! checks that the engine settings match; the code it maps was produced by
//! the daemon's own binary from the file's bytes.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The hidden first argument that turns the `host` binary into a compiler.
pub const SUBCOMMAND: &str = "__compile-policy";

/// How the compiler child is started and bounded.
#[derive(Debug, Clone)]
pub struct CompilerSettings {
    /// The `host` binary to run (default `/proc/self/exe`).
    pub exe: PathBuf,
    /// Wall-clock limit of one compilation (default 60 s).
    pub timeout: Duration,
    /// Address-space limit of the compiler process, in bytes (default 2 GiB).
    pub memory_limit: u64,
}

impl CompilerSettings {
    /// The running binary, with the default limits.
    pub fn this_binary() -> Self {
        CompilerSettings {
            exe: PathBuf::from("/proc/self/exe"),
            timeout: Duration::from_secs(60),
            memory_limit: 2 << 30,
        }
    }
}

/// Why the child produced no artifact.
#[derive(Debug)]
pub enum CompileFailure {
    /// The component is invalid (Cranelift or validation said why).
    Invalid(String),
    /// A time or memory bound stopped the compiler.
    Limit(String),
    /// The runtime is shutting down.
    Cancelled,
    /// The child could not be run at all.
    Spawn(String),
}

/// The compiler child's nice value (the lowest priority).
pub const COMPILER_NICE: i32 = 19;

/// Largest artifact accepted from the child.
const MAX_ARTIFACT: u64 = 1 << 30;
/// Largest error text kept from the child.
const MAX_STDERR: u64 = 16 << 10;

/// Compile `bytes` in a child process; the precompiled artifact.
pub fn compile_in_child(
    settings: &CompilerSettings,
    bytes: &[u8],
    cancel: &AtomicBool,
) -> Result<Vec<u8>, CompileFailure> {
    let memory_limit = settings.memory_limit;
    let cpu_seconds = settings.timeout.as_secs().saturating_mul(cpu_count()).saturating_add(1);
    let mut command = Command::new(&settings.exe);
    command.arg(SUBCOMMAND).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (setrlimit, prctl) on plain values.
    unsafe {
        command.pre_exec(move || {
            let limit = |resource, value: u64| {
                let rlim = libc::rlimit { rlim_cur: value, rlim_max: value };
                if libc::setrlimit(resource, &rlim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            limit(libc::RLIMIT_AS, memory_limit)?;
            limit(libc::RLIMIT_CPU, cpu_seconds)?;
            limit(libc::RLIMIT_CORE, 0)?;
            // Lowest priority: a compile bomb takes what the machine's
            // other work leaves, not the daemon's or the services' CPU.
            if libc::setpriority(libc::PRIO_PROCESS, 0, COMPILER_NICE) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        CompileFailure::Spawn(format!("cannot start the compiler process {}: {e}", settings.exe.display()))
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CompileFailure::Spawn("the compiler process has no pipes".into()));
    };
    let artifact = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A child that dies early closes the pipe: the write fails, fine.
            let _ = stdin.write_all(bytes);
        });
        let out = scope.spawn(move || read_bounded(stdout, MAX_ARTIFACT));
        let err = scope.spawn(move || read_bounded(stderr, MAX_STDERR));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(CompileFailure::Spawn(format!("waiting for the compiler process: {e}"))),
            }
            if cancel.load(Ordering::Relaxed) {
                kill(&mut child);
                break Err(CompileFailure::Cancelled);
            }
            if started.elapsed() > settings.timeout {
                kill(&mut child);
                break Err(CompileFailure::Limit(format!(
                    "compiling took longer than the {} s limit (--policy-compile-timeout)",
                    settings.timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        (status, out, err)
    });
    let (status, out, err) = artifact;
    let status = status?;
    let stderr = String::from_utf8_lossy(&err);
    let first_line = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    if status.success() {
        return Ok(out);
    }
    let mib = settings.memory_limit >> 20;
    let out_of_memory = || {
        CompileFailure::Limit(format!(
            "the compiler ran out of its {mib} MiB memory limit (--policy-compile-memory-mib)"
        ))
    };
    let says_oom = |text: &str| {
        ["memory allocation", "out of memory", "Cannot allocate memory", "os error 12"].iter().any(|m| text.contains(m))
    };
    match (status.code(), status.signal()) {
        (Some(2), _) if says_oom(&stderr) => Err(out_of_memory()),
        (Some(2), _) => Err(CompileFailure::Invalid(first_line)),
        (_, Some(libc::SIGXCPU)) | (_, Some(libc::SIGKILL)) => Err(CompileFailure::Limit(format!(
            "the compiler used more than its CPU-time limit ({})",
            status_text(status)
        ))),
        (_, Some(libc::SIGABRT)) | (_, Some(libc::SIGSEGV))
            if first_line.contains("memory") || first_line.is_empty() =>
        {
            Err(out_of_memory())
        }
        _ if says_oom(&stderr) => Err(out_of_memory()),
        _ => Err(CompileFailure::Limit(format!("the compiler process failed ({}): {first_line}", status_text(status)))),
    }
}

fn status_text(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (_, Some(signal)) => format!("killed by signal {signal}"),
        _ => "unknown status".into(),
    }
}

fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read_bounded(from: impl Read, max: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut from = from.take(max);
    let _ = from.read_to_end(&mut buf);
    // Drain the rest so the child never blocks on a full pipe.
    let _ = std::io::copy(&mut from.into_inner(), &mut std::io::sink());
    buf
}

fn cpu_count() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// The child side: read a component on stdin, write the artifact on stdout.
/// Exit 2 for an invalid component (its reason on stderr), 1 otherwise.
pub fn child_main() -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component from stdin: {err}");
        return ExitCode::from(1);
    }
    let engine = match super::engine() {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(1);
        }
    };
    let artifact = match engine.precompile_component(&bytes) {
        Ok(artifact) => artifact,
        Err(err) => {
            eprintln!("{}", super::cause_chain(&err));
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&artifact).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("writing the artifact: {err}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiler_child_runs_at_the_lowest_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("fake-compiler");
        // Reports its own nice value (field 19 of /proc/self/stat) as an
        // invalid component (exit code 2, the first line of stderr).
        std::fs::write(&exe, "#!/bin/sh\nread -r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ nice _ < /proc/$$/stat\necho \"nice=$nice\" >&2\nexit 2\n")
            .expect("write");
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let settings = CompilerSettings { exe, ..CompilerSettings::this_binary() };
        match compile_in_child(&settings, b"", &AtomicBool::new(false)) {
            Err(CompileFailure::Invalid(text)) => assert_eq!(text, format!("nice={COMPILER_NICE}")),
            other => panic!("{other:?}"),
        }
    }
}
