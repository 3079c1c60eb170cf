# Sourced by build.sh and by examples/setup.sh: `js_toolchain` makes sure
# componentize-js is installed, once per machine and version, into a tools
# folder outside any checkout (it is about 390 MB of node_modules, so one
# copy serves every clone, the example and scaffolded projects alike), and
# sets COMPONENTIZE_JS to its command. Installs only what is missing; from
# package-lock.json beside this file when there is one (reproducible).

COMPONENTIZE_JS_VERSION=0.23.0
PREVIEW2_SHIM_VERSION=0.25.0

js_toolchain() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node and npm not found: install Node.js 18 or newer (Debian: apt-get install nodejs npm)" >&2
        return 1
    fi
    local tools="${AUTOSCALER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/swarm-autoscaler/tools}"
    local dir="$tools/componentize-js-$COMPONENTIZE_JS_VERSION"
    COMPONENTIZE_JS="$dir/node_modules/.bin/componentize-js"
    local shim="$dir/node_modules/@bytecodealliance/preview2-shim/package.json"
    [ -x "$COMPONENTIZE_JS" ] && [ -f "$shim" ] && return 0
    mkdir -p "$dir"
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    (
        # Two builds at once install once.
        flock 9
        [ -x "$COMPONENTIZE_JS" ] && [ -f "$shim" ] && exit 0
        echo "installing componentize-js $COMPONENTIZE_JS_VERSION (npm) into $dir (once per machine)" >&2
        if [ -f "$here/package-lock.json" ]; then
            cp "$here/package.json" "$here/package-lock.json" "$dir/"
            npm ci --prefix "$dir" --prefer-offline --no-audit --no-fund --loglevel=error >&2
        else
            # componentize-js imports preview2-shim without declaring it.
            npm install --prefix "$dir" --prefer-offline --no-audit --no-fund --loglevel=error \
                "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
                "@bytecodealliance/preview2-shim@$PREVIEW2_SHIM_VERSION" >&2
        fi
    ) 9>"$tools/.componentize-js.lock"
    [ -x "$COMPONENTIZE_JS" ] || { echo "componentize-js did not install into $dir" >&2; return 1; }
}
