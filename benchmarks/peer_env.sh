#!/usr/bin/env bash
# Make a peer's own virtual environment for the benchmarks (never a dependency of tether).
#
#     benchmarks/peer_env.sh poap        # -> benchmarks/.venv-poap with POAP 0.1.26
#
# Prints the environment's python on its last line. Idempotent: an existing environment
# whose import check passes is reused. PYTHON selects the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peer="${1:-}"
case "$peer" in
  poap)
    venv="$here/.venv-poap"
    pkgs=(poap==0.1.26 numpy)
    check='import importlib.metadata as m, numpy, poap.tcpserve, poap.controller; v = m.version("poap"); assert v == "0.1.26", v'
    ;;
  *)
    echo "usage: $0 poap" >&2
    exit 2
    ;;
esac

py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then
  echo "$py"
  exit 0
fi
"${PYTHON:-python3}" -m venv "$venv"
"$py" -m pip install -q --disable-pip-version-check "${pkgs[@]}" >&2
"$py" -c "$check"
echo "$py"
