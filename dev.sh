#!/usr/bin/env bash
# VidLake's two commands, and the set-up they share.
#   ./dev.sh demo   set up, build the demo lake in ./demo-lake and show it
#   ./dev.sh test   set up, run the whole test suite (what CI runs)
#   ./dev.sh setup  only the set-up (a virtualenv in .venv with everything installed)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VIDLAKE_VENV:-.venv}"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  local stamp="$VENV/.vidlake-setup"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt dev.sh ]; then
    return
  fi
  python -m pip install -q --upgrade pip
  # An unpinned torch is a multi-GB CUDA build; without a GPU take the CPU wheel first.
  if ! python -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      python -m pip install -q "torch==2.13.0"
    else
      python -m pip install -q "torch==2.13.0" ${VIDLAKE_TORCH_INDEX:+--index-url "$VIDLAKE_TORCH_INDEX"}
    fi
  fi
  python -m pip install -q -e ".[all,dev]"
  touch "$stamp"
}

cmd="${1:-help}"
shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    setup
    exec vidlake --lake "${VIDLAKE_DEMO_LAKE:-demo-lake}" demo "$@"
    ;;
  test)
    setup
    exec python -m pytest -n 2 --dist loadfile "$@"
    ;;
  *)
    sed -n '2,6p' "$0"
    ;;
esac
