# Sourced by the scripts: finds a Python >= 3.11 and makes/refreshes the project's .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Event Collector needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "" or "[test]")
  local python
  if [ ! -x .venv/bin/python ]; then
    python="$(find_python)"
    echo "creating .venv with $("$python" --version)" >&2
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  echo "installing event-collector$1 into .venv" >&2
  .venv/bin/python -m pip install -q -e ".$1"
  if [ "$1" = "[test]" ]; then ensure_chromium; fi
}

# The console's browser tests (tests/console) drive Debian's chromium through Playwright
# (never a downloaded browser): install it when missing and apt-get is at hand.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: /usr/bin/chromium is missing; the browser tests will be skipped" >&2
    return 0
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "installing Debian's chromium for the browser tests" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "note: could not install chromium; the browser tests will be skipped" >&2
}
