//! `host policy new NAME --lang rust|python|js|c`: a ready policy project.
//!
//! Creates folder NAME holding the source with a working `decide` (the same
//! CPU band rule in every language, to be changed), the current contract
//! (`wit/`),
//! an executable `build.sh` that installs what the language needs when it
//! is missing and leaves `NAME.wasm` in the folder, and an executable
//! `test.sh` that runs the component through this daemon's runtime (`host
//! policy check` and `host policy run` on three states in `test/`). The
//! Rust project also has native unit tests with the SDK's builders, and
//! carries the SDK itself: its sources are embedded in this binary
//! ([`SDK`]) and written to the project's `sdk/`, so that the project builds
//! with nothing but `host` and cargo (`AUTOSCALER_SDK`, read when the
//! project is created, points it at another copy instead).
//!
//! Templates are files under `scaffold/templates/`, embedded in the binary
//! with `include_str!`; `__NAME__`, `__MODULE__` (NAME as an identifier),
//! `__CRATE__` and `__SDK__` are replaced when writing them.
//!
//! Invariant: never overwrites anything: an existing NAME fails.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The languages a project can be created in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the project's SDK (cargo, wasm32-wasip2).
    Rust,
    /// Python with componentize-py (PyPI).
    Python,
    /// JavaScript with componentize-js (npm).
    Js,
    /// C with clang for wasm32, wit-bindgen and wasm-tools.
    C,
}

/// One file of a template: path in the project (with placeholders), text,
/// and whether it is executable.
type File = (&'static str, &'static str, bool);

const TEST_SH: &str = include_str!("templates/common/test.sh");
/// The current contract, in every project (the Rust SDK also generates it).
const WIT: File = ("wit/policy.wit", include_str!("../../../wit/policy.wit"), false);
const COMMON: &[File] = &[
    ("test/event.json", include_str!("templates/common/event.json"), false),
    ("test/state-hot.json", include_str!("templates/common/state-hot.json"), false),
    ("test/state-warm.json", include_str!("templates/common/state-warm.json"), false),
    ("test/state-cold.json", include_str!("templates/common/state-cold.json"), false),
];
const RUST: &[File] = &[
    WIT,
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml"), false),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs"), false),
    ("build.sh", include_str!("templates/rust/build.sh"), true),
];
/// The Rust SDK this `host` was built with, written into a Rust project's
/// `sdk/` (its bindings come from the project's `wit/`, its `../wit`).
/// Every file of `sdk/src` must be here (a test checks).
const SDK: &[File] = &[
    ("sdk/Cargo.toml", include_str!("templates/rust/sdk.Cargo.toml"), false),
    ("sdk/src/declared.rs", include_str!("../../../sdk/src/declared.rs"), false),
    ("sdk/src/figure.rs", include_str!("../../../sdk/src/figure.rs"), false),
    ("sdk/src/hpa.rs", include_str!("../../../sdk/src/hpa.rs"), false),
    ("sdk/src/lib.rs", include_str!("../../../sdk/src/lib.rs"), false),
    ("sdk/src/series.rs", include_str!("../../../sdk/src/series.rs"), false),
    ("sdk/src/settings.rs", include_str!("../../../sdk/src/settings.rs"), false),
    ("sdk/src/spec.rs", include_str!("../../../sdk/src/spec.rs"), false),
    ("sdk/src/state.rs", include_str!("../../../sdk/src/state.rs"), false),
    ("sdk/src/testing.rs", include_str!("../../../sdk/src/testing.rs"), false),
    ("sdk/src/tests.rs", include_str!("../../../sdk/src/tests.rs"), false),
    (".gitignore", "/target\n/*.wasm\n", false),
];
const PYTHON: &[File] = &[
    WIT,
    ("__MODULE__.py", include_str!("templates/python/policy.py"), false),
    ("build.sh", include_str!("templates/python/build.sh"), true),
    (".gitignore", "/*.wasm\n__pycache__/\n", false),
];
const JS: &[File] = &[
    WIT,
    ("__NAME__.js", include_str!("templates/js/policy.js"), false),
    ("package.json", include_str!("templates/js/package.json"), false),
    ("build.sh", include_str!("templates/js/build.sh"), true),
    ("toolchain.sh", include_str!("../../../examples/policies/js/toolchain.sh"), false),
    (".gitignore", "/*.wasm\n/node_modules\n", false),
];
const C: &[File] = &[
    WIT,
    ("__MODULE__.c", include_str!("templates/c/policy.c"), false),
    ("build.sh", include_str!("templates/c/build.sh"), true),
    ("toolchain.sh", include_str!("../../../examples/policies/c/toolchain.sh"), false),
    (".gitignore", "/*.wasm\n/gen\n/*.o\n", false),
];

/// Create the project `parent/name` in `lang`; returns its folder.
pub fn create(parent: &Path, name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or remove it", dir.display());
    }
    let module = name.replace(['-', '.'], "_");
    let external = match lang {
        Lang::Rust => sdk_path()?,
        _ => None,
    };
    let sdk = external.as_ref().map_or_else(|| "sdk".to_string(), |p| p.display().to_string());
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__MODULE__", &module)
            .replace("__CRATE__", &module)
            .replace("__SDK__", &sdk)
    };
    let pre_test = match lang {
        Lang::Rust => "cargo test --quiet\n",
        _ => "",
    };
    let sdk_files = match lang {
        Lang::Rust if external.is_none() => SDK,
        _ => &[],
    };
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::C => C,
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Create the folder itself without `_all`: a racing creator fails here.
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let test_sh = fill(&TEST_SH.replace("__PRE_TEST__", pre_test));
    let all = COMMON.iter().chain(files).map(|(path, text, exec)| (fill(path), fill(text), *exec));
    // The SDK's sources as they are, placeholders or not.
    let all = all.chain(sdk_files.iter().map(|(path, text, exec)| (path.to_string(), text.to_string(), *exec)));
    for (path, text, exec) in all.chain(std::iter::once(("test.sh".to_string(), test_sh, true))) {
        let file = dir.join(&path);
        if let Some(folder) = file.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        if exec {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", file.display()))?;
        }
    }
    Ok(dir)
}

/// What to do next, for the person who ran `host policy new`.
pub fn next_steps(dir: &Path, name: &str, lang: Lang) -> String {
    let source = match lang {
        Lang::Rust => "src/lib.rs".to_string(),
        Lang::Python => format!("{}.py", name.replace(['-', '.'], "_")),
        Lang::Js => format!("{name}.js"),
        Lang::C => format!("{}.c", name.replace(['-', '.'], "_")),
    };
    format!(
        "created {dir}: a {lang:?} policy project\n\
         \n  cd {dir}\n  \
         ./build.sh     # installs what is missing, leaves {name}.wasm here\n  \
         ./test.sh      # runs it through `host policy check` and `host policy run`\n\
         \nEdit {source} to change the rule and test/*.json for the cases; then copy\n\
         {name}.wasm into the daemon's policies folder and bind a service with the labels\n\
         autoscale.enable=true autoscale.policy={name} autoscale.min=1 autoscale.max=5",
        dir = dir.display()
    )
}

/// A name that is a policy name, a folder, a crate and (as `__MODULE__`)
/// an identifier in every language.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "policy name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter, \
             at most 64 characters (it names the folder, the .wasm and the autoscale.policy label)"
        );
    }
    Ok(())
}

/// The SDK a Rust project depends on, as the `path` of its dependency:
/// `AUTOSCALER_SDK` if set when `host policy new` runs (read then, and only
/// then: the project keeps the absolute path), else `sdk`, the copy of the
/// SDK this `host` carries, written into the project by [`create`] so that
/// it builds with nothing but `host` and cargo.
fn sdk_path() -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = std::env::var_os("AUTOSCALER_SDK").map(PathBuf::from) else {
        return Ok(None);
    };
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "AUTOSCALER_SDK is {}, which has no Cargo.toml: point it at the sdk/ folder of an autoscaler checkout, or unset it to use the SDK this host carries",
            path.display()
        );
    }
    path.canonicalize().map(Some).with_context(|| format!("resolving {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carried_sdk_is_the_whole_sdk() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&src)
            .expect("sdk/src")
            .map(|e| format!("sdk/src/{}", e.expect("entry").file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let carried: Vec<String> =
            SDK.iter().map(|(path, _, _)| path.to_string()).filter(|p| p.starts_with("sdk/src/")).collect();
        assert_eq!(carried, on_disk, "add the new file of sdk/src to scaffold::SDK");
        let manifest = std::fs::read_to_string(src.join("../Cargo.toml")).expect("sdk/Cargo.toml");
        let wit_bindgen = |text: &str| text.lines().find(|l| l.starts_with("wit-bindgen")).map(str::to_string);
        assert!(wit_bindgen(&manifest).is_some(), "{manifest}");
        assert!(wit_bindgen(SDK[0].1).is_some_and(|l| !l.contains("workspace")), "a standalone manifest");
    }

    #[test]
    fn a_rust_project_carries_its_sdk() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = create(parent.path(), "carried", Lang::Rust).expect("created");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(manifest.contains(r#"autoscaler-sdk = { path = "sdk" }"#), "{manifest}");
        assert!(!manifest.contains(env!("CARGO_MANIFEST_DIR")), "no path into the checkout: {manifest}");
        let lib = std::fs::read_to_string(dir.join("sdk/src/lib.rs")).expect("sdk lib.rs");
        assert_eq!(lib, include_str!("../../../sdk/src/lib.rs"));
        assert!(dir.join("wit/policy.wit").is_file(), "the SDK's ../wit");
    }

    #[test]
    fn names_must_fit_every_language() {
        for good in ["burst", "my-policy", "p2_fast"] {
            check_name(good).expect(good);
        }
        for bad in ["", "My", "2fast", "a b", "../x", "x.y", &"a".repeat(65)] {
            let err = check_name(bad).expect_err(bad).to_string();
            assert!(err.contains("lowercase letters"), "{err}");
        }
    }

    #[test]
    fn every_language_gets_source_build_and_test_and_nothing_is_overwritten() {
        let parent = tempfile::tempdir().expect("tempdir");
        for (lang, source) in
            [(Lang::Rust, "src/lib.rs"), (Lang::Python, "my_pol.py"), (Lang::Js, "my-pol.js"), (Lang::C, "my_pol.c")]
        {
            let sub = parent.path().join(format!("{lang:?}"));
            let dir = create(&sub, "my-pol", lang).expect("created");
            for file in [source, "build.sh", "test.sh", "wit/policy.wit", "test/state-hot.json"] {
                let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{lang:?} {file}: {e}"));
                assert!(
                    !text.contains("__NAME__") && !text.contains("__MODULE__"),
                    "{lang:?} {file}: placeholder left"
                );
            }
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("build.sh")).expect("build.sh").permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
            assert!(std::fs::read_to_string(dir.join("test.sh")).expect("test.sh").contains("my-pol.wasm"));
            let err = create(&sub, "my-pol", lang).expect_err("exists").to_string();
            assert!(err.contains("already exists"), "{err}");
        }
    }
}
