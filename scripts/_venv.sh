# Sourced by scripts/demo and scripts/test: create or refresh the repo's virtual environment.
# Usage: ensure_venv EXTRAS   (e.g. "" or "test,bo,plot,dev")
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

# pip's own output is long and, off a terminal, silent during a big download or unpack:
# show one line per download (name, version, size), each phase, and a line every 15 s
# while nothing else happens, so a first install never looks hung.
_pip_line() {
    local file size name version
    case "$1" in
        *Downloading\ *) file=${1##*Downloading }; file=${file##*/}; size="(${file##*(}"
                          IFS=- read -r name version _ <<<"${file%% *}"
                          _say "downloading $name $version $size" ;;
        "Installing collected packages:"*) _say "unpacking and installing the packages ..." ;;
        "Successfully installed"*) _say "installed" ;;
    esac
}
_say() { printf '  [%3ds] %s\n' $((SECONDS - _start)) "$1" >&2; }
_pip_progress() {
    local line buf="" rc
    _start=$SECONDS
    while :; do
        if IFS= read -r -t 15 line; then
            _pip_line "$buf$line"; buf=""
        else
            rc=$?
            if [ "$rc" -le 128 ]; then [ -z "$buf$line" ] || _pip_line "$buf$line"; break; fi
            buf+=$line  # timed out mid-line: keep what came so far
            _say "still working ..."
        fi
    done
}

ensure_venv() {
    local extras="$1" spec="$ROOT" stamp
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV ..." >&2
        "$PY" -m venv "$VENV"
        # upgrade the bundled pip only if it predates editable pyproject installs (21.3):
        # the upgrade costs a download and several seconds
        if ! "$VENV/bin/python" -c 'import pip, sys
sys.exit(tuple(int(p) for p in pip.__version__.split(".")[:2]) < (21, 3))'; then
            "$VENV/bin/python" -m pip install -q --upgrade pip >"$VENV/install.log" 2>&1
        fi
    fi
    # reinstall only when pyproject.toml or the wanted extras changed. --no-compile: byte-
    # compiling all of TensorFlow doubles the install; Python compiles what it imports.
    stamp="$VENV/.tether-installed-$(echo "$extras" | tr ',' '_')"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "installing tether[$extras] into $VENV (full log: $VENV/install.log);" \
             "the first time downloads several hundred MB (TensorFlow) ..." >&2
        if ! PYTHONUNBUFFERED=1 "$VENV/bin/python" -m pip install --progress-bar off --no-compile -e "$spec" 2>&1 \
                | tee "$VENV/install.log" | _pip_progress; then
            tail -n 30 "$VENV/install.log" >&2; echo "install failed: see $VENV/install.log" >&2; exit 1
        fi
        touch "$stamp"
    fi
}
