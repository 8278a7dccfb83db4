# Sourced by scripts/demo and scripts/test: create or refresh the repo's virtual environment.
# Usage: ensure_venv EXTRAS   (e.g. "" or "test,bo,plot,dev")
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

ensure_venv() {
    local extras="$1" spec="$ROOT" stamp
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    fi
    # reinstall only when pyproject.toml or the wanted extras changed
    stamp="$VENV/.tether-installed-$(echo "$extras" | tr ',' '_')"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "setting up $VENV (tether[$extras]) ..." >&2
        if ! "$VENV/bin/python" -m pip install -e "$spec" >"$VENV/install.log" 2>&1; then
            tail -n 30 "$VENV/install.log" >&2; echo "install failed: see $VENV/install.log" >&2; exit 1
        fi
        touch "$stamp"
    fi
}
