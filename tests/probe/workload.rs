//! Real containers for the probe tests and benchmark: a static C workload
//! (`tests/probe/load.c`) compiled with `gcc -static` and packaged
//! `FROM scratch` (there is no image registry here), run with
//! `--network none` so every connection stays on the container's own
//! loopback. Containers are removed when their guard drops.

#![allow(dead_code, reason = "shared by the test and the benchmark, each uses a part")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The image every workload container runs.
pub const IMAGE: &str = "swarm-autoscaler-probe-load:local";

/// True when running as root; otherwise says loudly why the caller skips
/// (the benchmark's: the tests take `common::root_or_skip`).
pub fn root_or_explain(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!(
        "\n*** SKIPPING {what}: it loads eBPF programs and runs containers, which needs root (CI runs it as root) ***\n"
    );
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stderr(Stdio::piped()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Make sure dockerd answers (running examples/setup.sh if not) and the
/// workload image exists. Built once per process.
pub fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if run(Command::new("docker").arg("info")).is_err() {
            run(&mut Command::new(repo_root().join("examples/setup.sh")))?;
        }
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        run(Command::new("gcc")
            .args(["-static", "-O2", "-pthread", "-o"])
            .arg(dir.path().join("load"))
            .arg(repo_root().join("tests/probe/load.c")))?;
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY load /load\nENTRYPOINT [\"/load\"]\n")
            .map_err(|e| format!("writing Dockerfile: {e}"))?;
        run(Command::new("docker").env("DOCKER_BUILDKIT", "0").args(["build", "-q", "-t", IMAGE]).arg(dir.path()))?;
        Ok(())
    });
    if let Err(err) = result {
        panic!("cannot prepare the workload container image: {err}");
    }
    IMAGE
}

/// A running workload container, removed on drop.
#[derive(Debug)]
pub struct Container {
    /// Full container id.
    pub id: String,
}

impl Container {
    /// `docker run -d` the workload with `docker_args` before the image and
    /// `args` after it.
    pub fn start(docker_args: &[&str], args: &[&str]) -> Container {
        Container::start_on("none", docker_args, args)
    }

    /// [`Container::start`] on `network` (`host` for a server the test
    /// reaches on 127.0.0.1).
    pub fn start_on(network: &str, docker_args: &[&str], args: &[&str]) -> Container {
        let image = image();
        let id = run(Command::new("docker")
            .args(["run", "-d", "--network", network, "--label", "swarm-autoscaler-test=probe"])
            .args(docker_args)
            .arg(image)
            .args(args))
        .unwrap_or_else(|e| panic!("starting workload container: {e}"));
        Container { id }
    }

    /// A container of another local `image` (`docker run -d`), removed on
    /// drop; `None` when the image is not there.
    pub fn of_image(image: &str, docker_args: &[&str], args: &[&str]) -> Option<Container> {
        run(Command::new("docker").args(["image", "inspect", image])).ok()?;
        let id = run(Command::new("docker")
            .args(["run", "-d", "--label", "swarm-autoscaler-test=probe"])
            .args(docker_args)
            .arg(image)
            .args(args))
        .unwrap_or_else(|e| panic!("starting a {image} container: {e}"));
        Some(Container { id })
    }

    /// Everything the workload printed on stdout so far.
    pub fn logs(&self) -> String {
        run(Command::new("docker").args(["logs", &self.id]))
            .unwrap_or_else(|e| panic!("reading logs of {}: {e}", self.id))
    }

    /// Tell the workload to start its load (SIGUSR1).
    pub fn go(&self) {
        run(Command::new("docker").args(["kill", "-s", "USR1", &self.id]))
            .unwrap_or_else(|e| panic!("signalling {}: {e}", self.id));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ =
            Command::new("docker").args(["rm", "-f", &self.id]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
