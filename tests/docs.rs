//! The docs cannot rot: every command they show is run here, or vouched for
//! by a named test or script, and every flag they give `host` exists.
//!
//! Reads README.md, every `*.md` under docs/, deploy/README.md and every
//! README.md under examples/. In them:
//!
//! - every fenced block names its language: `sh` (or `bash`, `shell`) for
//!   commands, `console` for commands as `$ ` lines beside their output,
//!   anything else (`text`, `yaml`, `rust`, ...) is not a command;
//! - every command of a shell block is either **runnable** (safe and quick:
//!   `host --help`, `host policy new|check|run`, `host replay`, `cd`,
//!   `cat`...), and then runs, block after block, in a scratch folder that
//!   sees the checkout's top-level folders, with the built `host` on PATH;
//!   or it matches an entry of [`VOUCHED`], which names the file that runs
//!   it (checked to contain the command) or says why only a person runs it.
//!   Anything else fails, naming the file and line: a new command in the
//!   docs must be made runnable or added to the list;
//! - every `--flag` given to `host`, in a block or inline in the prose
//!   (`` `host status --json` ``), appears in the built binary's `--help`
//!   of that subcommand; a `cargo ... --bench/--test NAME` names a target of
//!   host/Cargo.toml; a repository script named as a command exists and is
//!   executable;
//! - every relative link leads to a file that exists, and an `#anchor` to a
//!   heading of that file;
//! - docs/configuration.md's flag tables list every flag of `host --help`
//!   with its environment variable and default, and nothing else.
//!
//! Needs the shipped policies (`policies/build.sh`; tests/run.sh builds
//! them first). Takes a few seconds.

mod common;

use common::{host_exe, repo};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Who runs a command the docs show but this test does not.
enum By {
    /// This file (repository-relative) runs it: it must contain `evidence`.
    /// A folder: some file under it must.
    File { file: &'static str, evidence: &'static str },
    /// Only a person runs it, for this reason; the static checks still apply.
    Hand(&'static str),
}

/// Commands the docs may show without this test running them. An entry
/// matches a command whose words (after `VAR=value` prefixes and `flock`,
/// `timeout` or `sudo` wrappers) start with `command`'s words.
const VOUCHED: &[(&str, By)] = &[
    ("tests/run.sh", By::File { file: ".ci/run", evidence: "exec tests/run.sh" }),
    (
        "examples/demo.sh",
        By::Hand(
            "the main job: as root, builds, deploys and drives load for minutes; \
             tests/swarm_e2e.rs checks what it shows on the same Swarm",
        ),
    ),
    ("examples/setup.sh", By::File { file: "tests/run.sh", evidence: "examples/setup.sh" }),
    ("policies/build.sh", By::File { file: "tests/run.sh", evidence: "policies/build.sh" }),
    ("./build.sh", By::File { file: "tests/scaffold.rs", evidence: "run(&dir, \"./build.sh\"" }),
    ("./test.sh", By::File { file: "tests/scaffold.rs", evidence: "run(&dir, \"./test.sh\"" }),
    (
        "cargo build --release -p host",
        By::File { file: "examples/demo.sh", evidence: "cargo build --release --quiet -p host" },
    ),
    (
        "cargo build --release --locked -p host --bin host --target x86_64-unknown-linux-gnu",
        By::File {
            file: "deploy/build-image.sh",
            evidence: "cargo build --release --quiet --locked -p host --bin host --target",
        },
    ),
    (
        "cargo bench -p host --bench",
        By::Hand("benchmarks run for minutes and print figures; the target is checked to exist"),
    ),
    // The Swarm end-to-end tests' daemon harness asks `host status --addr`.
    ("host status", By::File { file: "tests", evidence: "\"status\", \"--addr\"" }),
    ("swarm-autoscaler status", By::File { file: "tests", evidence: "\"status\", \"--addr\"" }),
    (
        "deploy/build-image.sh",
        By::File { file: "tests/cluster/stack-smoke.sh", evidence: "\"$root/deploy/build-image.sh\"" },
    ),
    ("deploy/deploy.sh", By::File { file: "tests/cluster/stack-smoke.sh", evidence: "\"$root/deploy/deploy.sh\"" }),
    (
        "tests/cluster/stack-smoke.sh",
        By::Hand("needs root, the test swarm and a static build of about 16 minutes (deploy/README.md)"),
    ),
    ("tests/cluster/up.sh", By::File { file: "tests/run.sh", evidence: "tests/cluster/up.sh 3" }),
    ("tests/cluster/down.sh", By::File { file: "tests/run.sh", evidence: "tests/cluster/down.sh" }),
    (
        "tests/evaluation/evaluate.py",
        By::Hand("as root, up to 30 minutes; its results are checked in under docs/evaluation/"),
    ),
    (
        "tests/evaluation/outcome.py smoke",
        By::File { file: "tests/run.sh", evidence: "tests/evaluation/outcome.py smoke" },
    ),
    (
        "tests/evaluation/outcome.py",
        By::Hand(
            "as root, minutes to hours of open-loop load; its results are checked in under docs/evaluation/outcomes/",
        ),
    ),
    ("useradd", By::Hand("creates the unit's system user (operations.md's systemd set-up)")),
    ("install", By::Hand("installs into /usr/local and /etc (operations.md's systemd set-up)")),
    ("systemctl", By::Hand("starts the installed unit (operations.md)")),
    ("journalctl", By::Hand("follows the installed unit's log (operations.md)")),
    (
        "docker service update",
        By::Hand(
            "needs a Swarm service of the reader's; tests/swarm_e2e.rs labels its services through the Engine API",
        ),
    ),
];

/// Programs that are always safe to run in the scratch folder.
const SAFE: &[&str] = &["cd", "export", "cat", "ls", "echo", "grep", "head", "tail", "wc", "true"];

/// `host` subcommands that run without a daemon, a Swarm or root.
const SAFE_HOST: &[&[&str]] = &[&["policy", "new"], &["policy", "check"], &["policy", "run"], &["replay"], &["help"]];

/// Links to pages other work adds; absent they are not an error, present
/// they are checked like any other.
const PENDING: &[&str] =
    &["docs/contract.md", "docs/languages.md", "docs/metrics.md", "docs/demand.md", "CHANGELOG.md"];

/// The markdown files this test reads, repository-relative.
fn doc_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("deploy/README.md")];
    let mut walk = vec![(PathBuf::from("docs"), false), (PathBuf::from("examples"), true)];
    while let Some((dir, readme_only)) = walk.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else { continue };
        for entry in entries.flatten() {
            let rel = dir.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if name != "target" && name != "node_modules" && !name.starts_with('.') {
                    walk.push((rel, readme_only));
                }
            } else if name.ends_with(".md") && (!readme_only || name == "README.md") {
                files.push(rel);
            }
        }
    }
    files.sort();
    files.retain(|f| root.join(f).is_file());
    files
}

/// A fenced block: its language (first word of the info string), the line
/// of its opening fence (1-based) and its lines.
struct Block {
    lang: String,
    line: usize,
    body: Vec<String>,
}

fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<(String, Block)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        let fence: String = trimmed.chars().take_while(|&c| c == '`' || c == '~').collect();
        let is_fence =
            indent <= 3 && fence.len() >= 3 && (fence.chars().all(|c| c == '`') || fence.chars().all(|c| c == '~'));
        match &mut open {
            Some((marker, block)) => {
                if is_fence && fence.starts_with(marker.as_str()) && trimmed[fence.len()..].trim().is_empty() {
                    let (_, block) = open.take().expect("open block");
                    out.push(block);
                } else {
                    block.body.push(raw.to_string());
                }
            }
            None if is_fence => {
                let lang = trimmed[fence.len()..].split_whitespace().next().unwrap_or("").to_string();
                open = Some((fence, Block { lang, line: i + 1, body: Vec::new() }));
            }
            None => {}
        }
    }
    match open {
        Some((_, block)) => Err(format!("line {}: the fenced block never closes", block.line)),
        None => Ok(out),
    }
}

/// One command line of a shell block, continuation lines joined.
struct Line {
    line: usize,
    text: String,
}

/// The command lines of a shell block: `\` continuations and quotes that
/// span lines are joined, comments dropped. In a `console` block only
/// `$ ` lines (and their continuations) are commands.
fn command_lines(block: &Block) -> Vec<Line> {
    let console = block.lang == "console";
    let mut out = Vec::new();
    let mut pending: Option<Line> = None;
    for (i, raw) in block.body.iter().enumerate() {
        let number = block.line + 1 + i;
        let piece = match (&pending, console) {
            (Some(_), _) => raw.as_str(),
            (None, true) => match raw.strip_prefix("$ ") {
                Some(rest) => rest,
                None => continue,
            },
            (None, false) => raw.as_str(),
        };
        let line = pending.get_or_insert_with(|| Line { line: number, text: String::new() });
        if !line.text.is_empty() {
            line.text.push('\n');
        }
        line.text.push_str(piece);
        let (open_quote, continued) = scan(&line.text);
        if open_quote || continued {
            continue;
        }
        let mut done = pending.take().expect("pending line");
        done.text = strip_comment(&done.text).trim().to_string();
        if !done.text.is_empty() {
            out.push(done);
        }
    }
    if let Some(mut done) = pending {
        done.text = strip_comment(&done.text).trim().to_string();
        out.push(done);
    }
    out
}

/// Whether `text` ends inside a quote, and whether it ends with a `\`
/// continuation (outside quotes and comments).
fn scan(text: &str) -> (bool, bool) {
    let stripped = strip_comment(text);
    let mut quote: Option<char> = None;
    let mut chars = stripped.chars();
    let mut last_backslash = false;
    while let Some(c) = chars.next() {
        last_backslash = false;
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            // A backslash escapes the next character; at the very end it
            // continues the line.
            (Some('"') | None, '\\') => last_backslash = chars.next().is_none(),
            _ => {}
        }
    }
    (quote.is_some(), quote.is_none() && last_backslash)
}

/// `text` without a `#` comment (a `#` that starts a word outside quotes),
/// on every line.
fn strip_comment(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut skipping = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if skipping {
            if c == '\n' {
                skipping = false;
                out.push(c);
            }
            continue;
        }
        match (quote, c) {
            (None, '#') if prev.is_whitespace() => {
                skipping = true;
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                    prev = next;
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The simple commands of a command line, each as its words (quotes
/// removed): split at `&&`, `||`, `;`, `|` and `&` outside quotes.
fn simple_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut depth = 0usize; // inside $( ... )
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => match chars.next() {
                Some('\n') | None => {}
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
            },
            (None, '$') if chars.peek() == Some(&'(') => {
                word.push('$');
                word.push(chars.next().expect("peeked"));
                depth += 1;
                in_word = true;
            }
            (None, ')') if depth > 0 => {
                word.push(c);
                depth -= 1;
            }
            (None, c) if depth > 0 => word.push(c),
            (None, c) if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
            (None, ';' | '|' | '&') => {
                end_word(&mut word, &mut in_word, &mut words);
                if matches!(chars.peek(), Some('&' | '|')) {
                    chars.next();
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// Close the word being read, if any.
fn end_word(word: &mut String, in_word: &mut bool, words: &mut Vec<String>) {
    if *in_word {
        words.push(std::mem::take(word));
        *in_word = false;
    }
}

/// The command itself: without `VAR=value` prefixes and without the
/// `flock`, `timeout`, `sudo` or `env` that wraps it.
fn unwrap(mut words: &[String]) -> &[String] {
    loop {
        let Some(first) = words.first() else { return words };
        let is_assignment = first
            .split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if is_assignment || first == "sudo" || first == "env" {
            words = &words[1..];
        } else if first == "flock" || first == "timeout" {
            // Options (with their values for -w/-s/-k), then the lock file or
            // the duration, then the command.
            let mut rest = &words[1..];
            while let Some(option) = rest.first().filter(|w| w.starts_with('-')) {
                let takes_value = matches!(
                    option.as_str(),
                    "-w" | "--wait"
                        | "--timeout"
                        | "-s"
                        | "--signal"
                        | "-k"
                        | "--kill-after"
                        | "-E"
                        | "--conflict-exit-code"
                );
                let skip = if takes_value { 2 } else { 1 };
                rest = &rest[skip.min(rest.len())..];
            }
            words = rest.get(1..).unwrap_or(&[]);
        } else {
            return words;
        }
    }
}

fn starts_with(words: &[String], prefix: &str) -> bool {
    let prefix: Vec<&str> = prefix.split_whitespace().collect();
    words.len() >= prefix.len() && words.iter().zip(&prefix).all(|(w, p)| w == p)
}

/// `host --help` of each subcommand path, and its subcommands.
struct Help {
    cache: HashMap<Vec<String>, String>,
}

impl Help {
    fn of(&mut self, path: &[String]) -> &str {
        self.cache.entry(path.to_vec()).or_insert_with(|| {
            let out = Command::new(host_exe()).args(path).arg("--help").output().expect("run host --help");
            assert!(
                out.status.success(),
                "host {} --help failed: {}",
                path.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    }

    /// The names under `Commands:` in a help text.
    fn subcommands(help: &str) -> BTreeSet<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            // A command's line is indented by two; its wrapped text by more.
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// The subcommand path of `host ARGS...` (`["policy", "run"]`), and
    /// the index of the first argument after it.
    fn path(&mut self, args: &[String]) -> (Vec<String>, usize) {
        let mut path = Vec::new();
        for arg in args {
            let commands = Self::subcommands(self.of(&path));
            if commands.contains(arg) && arg != "help" {
                path.push(arg.clone());
            } else {
                break;
            }
        }
        let used = path.len();
        (path, used)
    }
}

/// Problems with `host ARGS...`: flags its `--help` does not list.
fn check_host_flags(help: &mut Help, args: &[String]) -> Vec<String> {
    let (path, _) = help.path(args);
    let text = help.of(&path).to_string();
    args.iter()
        .filter(|a| a.starts_with("--") && a.len() > 2)
        .map(|a| a.split('=').next().unwrap_or(a))
        .filter(|flag| !text.split(|c: char| c.is_whitespace() || c == ',' || c == '[').any(|w| w == *flag))
        .map(|flag| format!("`host {}` has no flag {flag} (see `host {} --help`)", path.join(" "), path.join(" ")))
        .collect()
}

/// Whether `host ARGS...` is safe and quick to run here.
fn host_is_safe(help: &mut Help, args: &[String]) -> bool {
    if args.iter().any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V") {
        return true;
    }
    if args.first().is_some_and(|a| a == "help") {
        return true;
    }
    let (path, _) = help.path(args);
    SAFE_HOST.iter().any(|safe| path.len() == safe.len() && path.iter().zip(safe.iter()).all(|(a, b)| a == b))
}

/// Static checks of one simple command, whoever runs it.
fn static_problems(help: &mut Help, words: &[String]) -> Vec<String> {
    let root = repo();
    let mut problems = Vec::new();
    let Some(program) = words.first() else { return problems };
    if program == "host" || program == "swarm-autoscaler" {
        problems.extend(check_host_flags(help, &words[1..]));
    }
    if program == "cargo" {
        let manifest = std::fs::read_to_string(root.join("host/Cargo.toml")).expect("host/Cargo.toml");
        for pair in words.windows(2) {
            if (pair[0] == "--bench" || pair[0] == "--test") && !manifest.contains(&format!("name = \"{}\"", pair[1])) {
                problems.push(format!("host/Cargo.toml has no target {} for {}", pair[1], pair[0]));
            }
        }
    }
    if program.contains('/') && !program.starts_with("./") && !program.starts_with('/') && !program.starts_with('$') {
        let path = root.join(program);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o111 == 0 {
                    problems.push(format!("{program} is not executable"));
                }
                if program.ends_with(".py") {
                    problems.extend(check_script_args(&path, program, &words[1..]));
                }
            }
            Err(_) => problems.push(format!("{program} does not exist in the repository")),
        }
    }
    problems
}

/// A Python script's arguments against its `--help`.
fn check_script_args(path: &Path, program: &str, args: &[String]) -> Vec<String> {
    let Ok(out) = Command::new("python3").arg(path).arg("--help").output() else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut problems = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let flag = arg.split('=').next().unwrap_or(arg);
        let positional = i == 0 && !arg.starts_with('-');
        if (flag.starts_with("--") || positional) && !text.contains(flag) {
            problems.push(format!("{program} --help does not know {flag}"));
        }
    }
    problems
}

/// A folder that looks like the checkout from inside (its top-level
/// entries linked), for one document's runnable commands.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("scratch folder");
    for entry in std::fs::read_dir(repo()).expect("read the repository").flatten() {
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), dir.path().join(&name)).expect("link into the scratch folder");
    }
    let bin = dir.path().join(".bin");
    std::fs::create_dir(&bin).expect("bin folder");
    std::os::unix::fs::symlink(host_exe(), bin.join("host")).expect("link host");
    dir
}

/// Run one block's runnable lines in `dir`, in order, as one script.
fn run_block(dir: &Path, file: &Path, lines: &[&Line]) -> Result<(), String> {
    let mut script = String::from("set -eo pipefail\n");
    for line in lines {
        script.push_str(&format!("echo '>>> {}:{}' >&2\n{}\n", file.display(), line.line, line.text));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let out = Command::new("timeout")
        .args(["60", "bash", "-c", &script])
        .current_dir(dir)
        .env("PATH", format!("{}:{path}", dir.join(".bin").display()))
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .env("HOME", dir)
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = stderr.lines().rfind(|l| l.starts_with(">>> ")).unwrap_or(">>> ?").trim_start_matches(">>> ");
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!(
        "{at}: the command failed ({}):\n--- stdout (end)\n{}\n--- stderr (end)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        tail.join("\n")
    ))
}

#[test]
fn every_command_in_the_docs_runs_or_is_vouched_for() {
    let root = repo();
    assert!(
        root.join("policies/threshold.wasm").is_file(),
        "policies/threshold.wasm is missing: run policies/build.sh first (tests/run.sh does)"
    );
    let mut help = Help { cache: HashMap::new() };
    let mut problems: Vec<String> = Vec::new();
    let mut ran = 0usize;
    let mut by_hand = BTreeSet::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(root.join(&file)).expect("read a doc");
        let blocks = match blocks(&text) {
            Ok(blocks) => blocks,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let dir = scratch();
        for block in &blocks {
            if block.lang.is_empty() {
                problems.push(format!(
                    "{}:{}: a fenced block without a language: `sh` for commands, `text` for output",
                    file.display(),
                    block.line
                ));
                continue;
            }
            if !matches!(block.lang.as_str(), "sh" | "bash" | "shell" | "console") {
                continue;
            }
            let lines = command_lines(block);
            let mut runnable = Vec::new();
            for line in &lines {
                let at = format!("{}:{}", file.display(), line.line);
                let mut all_safe = true;
                for words in simple_commands(&line.text) {
                    let words = unwrap(&words);
                    let Some(program) = words.first() else { continue };
                    problems.extend(static_problems(&mut help, words).into_iter().map(|p| format!("{at}: {p}")));
                    let safe =
                        SAFE.contains(&program.as_str()) || (program == "host" && host_is_safe(&mut help, &words[1..]));
                    if safe {
                        continue;
                    }
                    all_safe = false;
                    match VOUCHED.iter().find(|(prefix, _)| starts_with(words, prefix)) {
                        Some((_, By::File { file: runner, evidence })) => {
                            if !contains(&root.join(runner), evidence) {
                                problems.push(format!(
                                    "{at}: `{}` is vouched for by {runner}, which no longer contains {evidence:?}",
                                    words.join(" ")
                                ));
                            }
                        }
                        Some((_, By::Hand(reason))) => {
                            by_hand.insert(format!("{}: {reason}", words.join(" ")));
                        }
                        None => problems.push(format!(
                            "{at}: `{}` is neither runnable here nor vouched for: make it runnable (a safe `host` \
                             subcommand on shipped files), or add it to VOUCHED in tests/docs.rs with the test \
                             or script that runs it; output samples go in a ```text block",
                            words.join(" ")
                        )),
                    }
                }
                if all_safe {
                    runnable.push(line);
                }
            }
            if !runnable.is_empty() {
                ran += runnable.len();
                if let Err(e) = run_block(dir.path(), &file, &runnable) {
                    problems.push(e);
                }
            }
        }
        problems.extend(link_problems(&file, &text));
        problems.extend(inline_host_problems(&mut help, &file, &text));
    }
    eprintln!(
        "{ran} command lines ran; run only by a person:\n  {}",
        by_hand.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    assert!(problems.is_empty(), "{} problem(s) in the docs:\n{}", problems.len(), problems.join("\n"));
    assert!(ran >= 5, "only {ran} command lines ran: did the docs lose their examples, or this test its parser?");
}

/// Flags of `host` commands written inline in prose (`` `host status --json` ``)
/// that the built binary does not have.
fn inline_host_problems(help: &mut Help, file: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for span in line.split('`').skip(1).step_by(2) {
            if let Some(rest) = span.strip_prefix("host ") {
                let words: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
                let at = format!("{}:{}", file.display(), i + 1);
                problems.extend(check_host_flags(help, &words).into_iter().map(|p| format!("{at}: {p}")));
            }
        }
    }
    problems
}

/// Whether the file, or some file under the folder, contains `text`.
fn contains(path: &Path, text: &str) -> bool {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else { return false };
        // Not this test itself, whose list names every evidence.
        entries
            .flatten()
            .any(|e| e.file_name() != "fixtures" && e.file_name() != "docs.rs" && contains(&e.path(), text))
    } else {
        std::fs::read_to_string(path).is_ok_and(|body| body.contains(text))
    }
}

/// GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#').replace('`', "").as_str()));
        }
    }
    out
}

/// Relative links that lead nowhere, outside code.
fn link_problems(file: &Path, text: &str) -> Vec<String> {
    let root = repo();
    let base = file.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code, then find `](target)`.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for part in prose.split("](").skip(1) {
            let Some(target) = part.split(')').next() else { continue };
            let target = target.split_whitespace().next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() { file.to_path_buf() } else { normalize(&base.join(path)) };
            let at = format!("{}:{}", file.display(), i + 1);
            if !root.join(&resolved).exists() {
                if !PENDING.iter().any(|p| Path::new(p) == resolved) {
                    problems.push(format!("{at}: link to {target}: {} does not exist", resolved.display()));
                }
                continue;
            }
            if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                let body = std::fs::read_to_string(root.join(&resolved)).unwrap_or_default();
                if !anchors(&body).contains(anchor) {
                    problems.push(format!("{at}: link to {target}: no heading #{anchor} in {}", resolved.display()));
                }
            }
        }
    }
    problems
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `host --help` parsed: flag -> (environment variable, default).
fn daemon_flags() -> HashMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(host_exe()).arg("--help").output().expect("host --help");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut finish = |current: &mut Option<(String, String)>| {
        if let Some((flag, desc)) = current.take() {
            let bracket = |key: &str| {
                let start = desc.find(&format!("[{key}: "))? + key.len() + 3;
                let end = desc[start..].find(']')? + start;
                Some(desc[start..end].to_string())
            };
            let env = bracket("env").map(|e| e.split('=').next().unwrap_or("").to_string());
            flags.insert(flag, (env, bracket("default")));
        }
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        let flag_line = trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.get(2..4) == Some(", "));
        if flag_line && line.len() - trimmed.len() <= 6 {
            finish(&mut current);
            let flag = trimmed.split(", ").last().unwrap_or(trimmed);
            let flag = flag.split(|c: char| c.is_whitespace() || c == '[' || c == '=').next().unwrap_or(flag);
            current = Some((flag.to_string(), String::new()));
        } else if let Some((_, desc)) = &mut current {
            desc.push(' ');
            desc.push_str(trimmed);
        }
    }
    finish(&mut current);
    flags.remove("--help");
    flags.remove("--version");
    flags
}

#[test]
fn the_configuration_page_lists_every_daemon_flag_with_its_environment_and_default() {
    let flags = daemon_flags();
    assert!(flags.len() > 20 && flags.contains_key("--policies"), "could not read host --help: {flags:?}");
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs/configuration.md");
    let mut problems = Vec::new();
    let mut documented = BTreeSet::new();
    for (i, line) in page.lines().enumerate() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `--flag` | `ENV` | default | meaning |
        let Some(flag) = cells.get(1).and_then(|c| c.strip_prefix("`--")).and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        let flag = format!("--{flag}");
        let at = format!("docs/configuration.md:{}", i + 1);
        documented.insert(flag.clone());
        let Some((env, default)) = flags.get(&flag) else {
            problems.push(format!("{at}: {flag} is not a flag of `host --help`"));
            continue;
        };
        let env_cell = cells.get(2).copied().unwrap_or("");
        if let Some(env) = env
            && env_cell != format!("`{env}`")
        {
            problems.push(format!("{at}: {flag} reads {env}, the page says {env_cell}"));
        }
        let default_cell = cells.get(3).copied().unwrap_or("");
        if let Some(default) = default
            && !default_cell.contains(&format!("`{default}`"))
        {
            problems.push(format!("{at}: {flag} defaults to {default}, the page says {default_cell}"));
        }
    }
    for flag in flags.keys() {
        if !documented.contains(flag) {
            problems.push(format!("docs/configuration.md does not document {flag} (in `host --help`)"));
        }
    }
    problems.sort();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parser_reads_what_the_docs_write() {
    let block = Block {
        lang: "sh".into(),
        line: 1,
        body: vec![
            "host policy run p.wasm \\".into(),
            "  --event '{\"a\":".into(),
            "            1}' --state @s.json   # a comment".into(),
            "cd my-policy && ./build.sh    # builds".into(),
            "# only a comment".into(),
            "FOO=1 flock -w 10 /tmp/x.lock tests/run.sh | tee log".into(),
        ],
    };
    let lines = command_lines(&block);
    assert_eq!(lines.len(), 3, "{:?}", lines.iter().map(|l| &l.text).collect::<Vec<_>>());
    assert_eq!((lines[0].line, lines[1].line, lines[2].line), (2, 5, 7));
    let first = simple_commands(&lines[0].text);
    assert_eq!(
        first,
        vec![vec!["host", "policy", "run", "p.wasm", "--event", "{\"a\":\n            1}", "--state", "@s.json"]]
    );
    let second = simple_commands(&lines[1].text);
    assert_eq!(second, vec![vec!["cd", "my-policy"], vec!["./build.sh"]]);
    let third = simple_commands(&lines[2].text);
    assert_eq!(unwrap(&third[0]), ["tests/run.sh"]);
    assert_eq!(third[1], ["tee", "log"]);
    assert_eq!(
        slug("Zero to one: a frozen replica's, and a removed service's, first response"),
        "zero-to-one-a-frozen-replicas-and-a-removed-services-first-response"
    );
    let fenced = blocks("text\n```sh\nls\n```\n\n````text\n```\n````\n").expect("blocks");
    assert_eq!(fenced.len(), 2);
    assert_eq!((fenced[0].lang.as_str(), fenced[1].body.len()), ("sh", 1));
}
