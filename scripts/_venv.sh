# Sourced by scripts/demo and scripts/test: create or refresh the repo's virtual environment.
# Usage: ensure_venv EXTRAS   (e.g. "" or "test,bo,plot,dev")
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

# pip's own output is long and, off a terminal, silent during a big download: show one
# line per download (with its size) and per phase, so a first install never looks hung.
_pip_progress() {
    local line start=$SECONDS
    while IFS= read -r line; do
        case "$line" in
            *Downloading\ *) line=${line##*Downloading }; line=${line##*/}
                              printf '  [%3ds] downloading %s\n' $((SECONDS - start)) "$line" >&2 ;;
            "Installing collected packages:"*)
                printf '  [%3ds] installing the packages ...\n' $((SECONDS - start)) >&2 ;;
            "Successfully installed"*) printf '  [%3ds] installed\n' $((SECONDS - start)) >&2 ;;
        esac
    done
}

ensure_venv() {
    local extras="$1" spec="$ROOT" stamp
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV ..." >&2
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    fi
    # reinstall only when pyproject.toml or the wanted extras changed
    stamp="$VENV/.tether-installed-$(echo "$extras" | tr ',' '_')"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "installing tether[$extras] into $VENV (full log: $VENV/install.log);" \
             "the first time downloads several hundred MB (TensorFlow) ..." >&2
        if ! "$VENV/bin/python" -m pip install --progress-bar off -e "$spec" 2>&1 \
                | tee "$VENV/install.log" | _pip_progress; then
            tail -n 30 "$VENV/install.log" >&2; echo "install failed: see $VENV/install.log" >&2; exit 1
        fi
        touch "$stamp"
    fi
}
