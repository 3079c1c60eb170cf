#!/usr/bin/env bash
# Build __MODULE__.py into __NAME__.wasm with componentize-py (PyPI),
# installing it with pip first if it is missing. The component carries a
# Python interpreter (about 18 MB); the daemon compiles it once (about 12 s
# of CPU with Cranelift: 8-16 s on 2 cores)
# and then loads it from its compile cache.
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
if ! command -v python3 >/dev/null; then
    echo "python3 not found: install Python 3.10 or newer (Debian: apt-get install python3 python3-pip)" >&2
    exit 1
fi
tool="$(find_tool || true)"
if [ -z "$tool" ]; then
    echo "installing componentize-py (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check componentize-py >&2
    tool="$(find_tool || true)"
    [ -n "$tool" ] || { echo "componentize-py installed but not found; add pip's scripts folder to PATH" >&2; exit 1; }
fi
"$tool" -d wit -w policy componentize __MODULE__ -o .__NAME__.wasm.tmp >&2
mv .__NAME__.wasm.tmp __NAME__.wasm
echo "$here/__NAME__.wasm ($(stat -c %s __NAME__.wasm) bytes)"
