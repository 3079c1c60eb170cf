#!/usr/bin/env bash
# Build burst.py into burst.wasm with componentize-py (pip install componentize-py).
# The component is about 18 MB (it carries a Python interpreter); the daemon
# compiles it once (~20 s with Cranelift) and then serves it from its cache.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
# pip may install the command outside PATH (for example under pyenv).
tool="$(command -v componentize-py || true)"
if [ -z "$tool" ]; then
    tool="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/componentize-py"
fi
if [ ! -x "$tool" ]; then
    echo "componentize-py not found: pip install componentize-py" >&2
    exit 1
fi
"$tool" -d ../../../wit/v0.1 -w policy componentize burst -o .burst.wasm.tmp
mv .burst.wasm.tmp burst.wasm
echo "examples/policies/python/burst.wasm ($(stat -c %s burst.wasm) bytes)"
