#!/usr/bin/env bash
# Build burst.py into burst.wasm with componentize-py (PyPI), installing it
# with pip first if it is missing.
# The component is about 18 MB (it carries a Python interpreter); the daemon
# compiles it once (about 12 s of CPU with Cranelift: 8-16 s on 2 cores) and then serves it
# from its compile cache (tens of milliseconds).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
find_tool() {
    # pip may install the command outside PATH (for example under pyenv).
    command -v componentize-py && return
    local scripts
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    [ -x "$scripts/componentize-py" ] && echo "$scripts/componentize-py"
}
tool="$(find_tool || true)"
if [ -z "$tool" ]; then
    echo "installing componentize-py (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check componentize-py >&2
    tool="$(find_tool || true)"
    [ -n "$tool" ] || { echo "componentize-py installed but not found on PATH" >&2; exit 1; }
fi
"$tool" -d ../../../wit -w policy componentize burst -o .burst.wasm.tmp >&2
mv .burst.wasm.tmp burst.wasm
echo "examples/policies/python/burst.wasm ($(stat -c %s burst.wasm) bytes)"
