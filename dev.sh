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
  local log="$VENV/setup.log"
  echo "dev.sh: installing VidLake and its dependencies into $VENV (log: $log)" >&2
  pip_q() {
    if ! python -m pip install -q "$@" >>"$log" 2>&1; then
      tail -30 "$log" >&2
      echo "dev.sh: pip install $* failed (full log: $log)" >&2
      exit 1
    fi
  }
  pip_q --upgrade pip
  # An unpinned torch is a multi-GB CUDA build; without a GPU take the CPU wheel first.
  if ! python -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      pip_q "torch==2.13.0"
    else
      pip_q "torch==2.13.0" ${VIDLAKE_TORCH_INDEX:+--index-url "$VIDLAKE_TORCH_INDEX"}
    fi
  fi
  pip_q -e ".[all,dev]"
  # compile the numba kernels (ingest cleaning, dedup) once: numba caches them, not the first run
  python -c "from vidprom_lake.ingest.normalise import warm_up; warm_up(); from vidprom_lake._dedup_kernels import warm_up as w; w()" >>"$log" 2>&1
  touch "$stamp"
}

# The report and web tests drive a real headless browser: Debian's chromium (Playwright's own
# browser download is never used).
browser() {
  if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    return
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "dev.sh: chromium is missing and this user cannot install it (apt-get install chromium);" \
           "the browser tests will fail" >&2
      return
    fi
  fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
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
    browser
    exec python -m pytest -n 2 --dist loadfile "$@"
    ;;
  *)
    sed -n '2,6p' "$0"
    ;;
esac
