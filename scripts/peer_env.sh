#!/usr/bin/env bash
# Create (or refresh) the environment of a peer optimizer whose version pins clash with
# tether's test environment: .venv-NAME at the repository root, holding tether (core
# dependencies, editable) and the peer. Prints the environment's python on stdout.
#   scripts/peer_env.sh trieste   # Trieste pins tensorflow < 2.19; tether[bo] takes newer
# Exit status 1 (with pip's last lines on stderr) when the peer cannot be installed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
case "${1:-}" in
    trieste) pkgs=("trieste>=4.0") ;;
    # Optuna's GPSampler needs PyTorch: 2.13.0 is the CPU build this kind of machine keeps
    # on disk (pip takes it from there); an unpinned torch pulls a CUDA build of several GB
    optuna-gp) pkgs=("optuna>=4.0" "torch==2.13.0") ;;
    *) echo "usage: $0 trieste|optuna-gp" >&2; exit 2 ;;
esac
VENV="$ROOT/.venv-$1"
stamp="$VENV/.peer-installed"
mkdir -p "$VENV"
exec 9>"$VENV.lock"
flock 9  # two test processes asking at once: one installs, the other waits for it
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$0" -nt "$stamp" ]; then
    echo "setting up $VENV (${pkgs[*]}) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    if ! "$VENV/bin/python" -m pip install -q -e "$ROOT" "${pkgs[@]}" >"$VENV/install.log" 2>&1; then
        tail -n 20 "$VENV/install.log" >&2
        echo "cannot install ${pkgs[*]}: see $VENV/install.log" >&2
        exit 1
    fi
    touch "$stamp"
fi
echo "$VENV/bin/python"
