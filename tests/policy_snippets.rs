//! The "Log, scale and hold" snippets of docs/writing-policies.md, built
//! into the project `host policy new` writes for each language exactly as
//! the doc shows them (the test reads them from the doc, so doc and test
//! cannot drift), then run through `host policy run`: a hot service gets a
//! replica and a log line, a cold one a hold of a minute.
//!
//! And what a failing policy tells its author: a template whose `decide`
//! logs, prints and then raises (Python `ValueError("boom")`, JavaScript
//! `throw new Error("boom")`, a Rust panic) must show the error, the line
//! it came from and what it logged and printed, in `host policy run`'s
//! output and in the error the daemon logs (the `PolicyError`'s text).
//!
//! The toolchains are those of tests/scaffold.rs (examples/setup.sh
//! installs them in CI; build.sh installs what is missing).

mod common;

use common::{host_exe, repo, rust_target};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use host::model::{Event, State};
use host::policy::{Runtime, RuntimeConfig};

fn command(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOST", host_exe())
        .env("CARGO_TARGET_DIR", rust_target())
        .env("AUTOSCALER_SDK", repo().join("sdk"))
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {}: {e}", dir.display()))
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = command(dir, program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first block fenced as `fence` in the doc's "Log, scale and hold" section.
fn snippet(fence: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/writing-policies.md")).expect("docs/writing-policies.md");
    let section = doc.split("\n## Log, scale and hold").nth(1).expect("the doc has a \"Log, scale and hold\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let open = format!("\n```{fence}\n");
    let start = section.find(&open).unwrap_or_else(|| panic!("no ```{fence} block in the section")) + open.len();
    let len = section[start..].find("\n```").expect("the block ends");
    section[start..start + len + 1].to_string()
}

/// A project made by `host policy new` in a temporary folder.
struct Project {
    _parent: tempfile::TempDir,
    dir: PathBuf,
    name: String,
    source: PathBuf,
}

impl Project {
    fn new(lang: &str, variant: &str) -> Self {
        let parent = tempfile::tempdir().expect("tempdir");
        let name = format!("{variant}-{lang}");
        run(parent.path(), host_exe(), &["policy", "new", &name, "--lang", lang]);
        let dir = parent.path().join(&name);
        let source = match lang {
            "rust" => dir.join("src/lib.rs"),
            "python" => dir.join(format!("{}.py", name.replace('-', "_"))),
            "js" => dir.join(format!("{name}.js")),
            _ => dir.join(format!("{}.c", name.replace('-', "_"))),
        };
        assert!(source.is_file(), "no {}", source.display());
        Project { _parent: parent, dir, name, source }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.source).expect("source")
    }

    /// Replace the function that starts with `header` (up to its end at
    /// `end`, the closing line at its indentation) by `with`, indented, and
    /// `keep` (what of `end` must stay).
    fn replace_function(&self, header: &str, end: &str, with: &str, indent: &str, keep: &str) {
        let text = self.text();
        let start = text.find(header).unwrap_or_else(|| panic!("no {header:?} in the template"));
        let stop = start + text[start..].find(end).unwrap_or_else(|| panic!("{header:?} does not end")) + end.len();
        let body: String =
            with.lines().map(|l| if l.is_empty() { "\n".into() } else { format!("{indent}{l}\n") }).collect();
        std::fs::write(&self.source, format!("{}{body}{keep}{}", &text[..start], &text[stop..])).expect("write");
    }

    /// Insert `lines` at the start of the body of the function whose first
    /// line starts with `header`; returns the 1-based line number of the
    /// first inserted line.
    fn prepend_to_body(&self, header: &str, lines: &[&str], indent: &str) -> usize {
        let text = self.text();
        let start = text.find(header).unwrap_or_else(|| panic!("no {header:?} in the template"));
        let body = start + text[start..].find('\n').expect("header line") + 1;
        let inserted: String = lines.iter().map(|l| format!("{indent}{l}\n")).collect();
        std::fs::write(&self.source, format!("{}{inserted}{}", &text[..body], &text[body..])).expect("write");
        text[..body].lines().count() + 1
    }

    fn build(&self) -> PathBuf {
        let built = run(&self.dir, "./build.sh", &[]);
        let wasm = self.dir.join(format!("{}.wasm", self.name));
        assert!(wasm.is_file(), "build.sh left no {}: {built}", wasm.display());
        wasm
    }

    /// `host policy run` on one of the template's states: (succeeded, stdout, stderr).
    fn policy_run(&self, state: &str) -> (bool, String, String) {
        let wasm = format!("{}.wasm", self.name);
        let state = format!("@test/state-{state}.json");
        let out =
            command(&self.dir, host_exe(), &["policy", "run", &wasm, "--event", "@test/event.json", "--state", &state]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The error of one call through the runtime, as the daemon logs it.
    fn daemon_error(&self, wasm: &Path) -> String {
        let runtime =
            Runtime::new(RuntimeConfig { time_limit: std::time::Duration::from_secs(5), ..Default::default() })
                .expect("runtime");
        let mut policy = runtime.load(&self.name, &std::fs::read(wasm).expect("wasm")).expect("loads");
        let settings = policy.resolve::<&str, &str>(&[]).expect("defaults");
        let state = State::replicas(2, 1, 5).with_cpu(&[0.9, 0.9]).with_settings(settings);
        policy.decide(&Event::cpu(0.9), &state).expect_err("the call fails").to_string()
    }
}

/// The doc's snippet for `lang`, built into its template: hot scales with
/// a log line, cold holds for a minute.
fn snippet_logs_scales_and_holds(project: &Project) {
    project.build();
    let (ok, decision, logged) = project.policy_run("hot");
    assert!(ok, "{decision}{logged}");
    assert!(decision.contains(r#""scale":3"#), "hot: {decision}");
    assert!(logged.contains("mean cpu 0.90, adding a replica"), "hot logs: {logged}");
    let (ok, decision, logged) = project.policy_run("cold");
    assert!(ok, "{decision}{logged}");
    assert!(decision.contains(r#""hold":60000000000"#), "cold: {decision}");
}

#[test]
fn rust_snippet_logs_scales_and_holds() {
    let project = Project::new("rust", "snippet");
    project.replace_function("    fn decide(", "\n    }\n", &snippet("rust"), "    ", "");
    snippet_logs_scales_and_holds(&project);
}

#[test]
fn python_snippet_logs_scales_and_holds() {
    let project = Project::new("python", "snippet");
    project.replace_function("def decide(", "\n\n\n", &snippet("python"), "", "\n\n");
    snippet_logs_scales_and_holds(&project);
}

#[test]
fn js_snippet_logs_scales_and_holds() {
    let project = Project::new("js", "snippet");
    project.replace_function("function rule(", "\n}\n", &snippet("js"), "", "");
    snippet_logs_scales_and_holds(&project);
}

#[test]
fn c_snippet_logs_scales_and_holds() {
    let project = Project::new("c", "snippet");
    project.replace_function("static bool rule(", "\n}\n", &snippet("c"), "", "");
    snippet_logs_scales_and_holds(&project);
}

/// `host policy run` fails, and both it and the daemon's error show each
/// of `expected`.
fn failure_is_explained(project: &Project, expected: &[String]) {
    let wasm = project.build();
    let (ok, stdout, stderr) = project.policy_run("hot");
    assert!(!ok, "the call must fail: {stdout}");
    for text in expected {
        assert!(stderr.contains(text.as_str()), "policy run does not show {text:?}:\n{stderr}");
    }
    let error = project.daemon_error(&wasm);
    for text in expected {
        assert!(error.contains(text.as_str()), "the daemon's error does not show {text:?}:\n{error}");
    }
}

#[test]
fn a_python_exception_shows_its_traceback_and_what_was_logged_before() {
    let project = Project::new("python", "boom");
    let first = project.prepend_to_body(
        "def decide(",
        &[
            r#"host.log(host.Level.INFO, "about to fail")"#,
            r#"print("printed before the raise", file=__import__("sys").stderr)"#,
            r#"raise ValueError("boom")"#,
        ],
        "    ",
    );
    let raise_line = first + 2;
    failure_is_explained(
        &project,
        &[
            "ValueError: boom".into(),
            format!("line {raise_line}, in decide"),
            "about to fail".into(),
            "printed before the raise".into(),
        ],
    );
}

#[test]
fn a_js_exception_shows_its_message_and_stack() {
    let project = Project::new("js", "boom");
    let first = project.prepend_to_body(
        "function rule(",
        &["log('info', 'about to fail');", "throw new Error('boom');"],
        "    ",
    );
    let throw_line = first + 1;
    failure_is_explained(
        &project,
        &["Error: boom".into(), format!("{}.js:{throw_line}:", project.name), "about to fail".into()],
    );
}

#[test]
fn a_rust_panic_shows_its_message_and_line() {
    let project = Project::new("rust", "boom");
    let first = project.prepend_to_body(
        "    fn decide(",
        &[r#"autoscaler_sdk::info!("about to fail");"#, r#"panic!("boom");"#],
        "        ",
    );
    let panic_line = first + 1;
    failure_is_explained(&project, &["boom".into(), format!("src/lib.rs:{panic_line}:"), "about to fail".into()]);
}

#[test]
fn js_refuses_a_fractional_scale_and_a_number_for_a_hold() {
    let project = Project::new("js", "strict");
    project.prepend_to_body(
        "function rule(",
        &[
            "if (state.currentReplicas === 2) {",
            "    return { action: { tag: 'scale', val: 2.5 }, reason: 'half' };",
            "}",
            "return { action: { tag: 'hold', val: 60e9 }, reason: 'a Number' };",
        ],
        "    ",
    );
    project.build();
    let (ok, stdout, stderr) = project.policy_run("hot");
    assert!(!ok, "scale 2.5 must fail: {stdout}");
    assert!(stderr.contains("scale: 2.5 is not a whole replica count"), "{stderr}");
    // The cold state is at 2 replicas as well: change it to 3.
    let cold = project.dir.join("test/state-cold.json");
    let text = std::fs::read_to_string(&cold).expect("state");
    assert!(text.contains(r#""current-replicas": 2"#), "{text}");
    std::fs::write(&cold, text.replace(r#""current-replicas": 2"#, r#""current-replicas": 3"#)).expect("write");
    let (ok, stdout, stderr) = project.policy_run("cold");
    assert!(!ok, "hold with a Number must fail: {stdout}");
    assert!(stderr.contains("is not nanoseconds as a BigInt"), "{stderr}");
}
