#!/usr/bin/env bash
# Set up crossmed on a fresh Linux machine with Python 3.11, then run the default study or the tests.
#   bash scripts/bootstrap.sh study     # venv + install + `dvc repro` of the default study
#   bash scripts/bootstrap.sh test      # venv + install + the pytest suite (extra args go to pytest)
# Safe to run again: the install step is skipped while pyproject.toml and constraints.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash scripts/bootstrap.sh study|test [pytest args...]" >&2; exit 64; }
[ $# -ge 1 ] || usage
task=$1; shift

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "crossmed needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1
}

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV"
  "$(find_python)" -m venv "$VENV"
fi
stamp="$VENV/.crossmed-install-stamp"
wanted=$(cat pyproject.toml constraints.txt | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "[bootstrap] installing torch==2.13.0 (CPU wheel) first, then crossmed with constraints.txt"
  # Byte-compiled at install (pip's default), not on first import: where PYTHONDONTWRITEBYTECODE is set (CI is such a
  # place) nothing would ever be cached, and every stage and Flower process would compile torch, MONAI and MLflow again.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
  echo "$wanted" > "$stamp"
else
  echo "[bootstrap] $VENV is up to date"
fi
export PATH="$PWD/$VENV/bin:$PATH"

# System packages the tests use: Chromium renders the `dvc plots show` page headless; PostgreSQL's server backs the
# shared MLflow set-up (`crossmed tracking up`, its tests start it on 127.0.0.1 as the postgres user).
apt_install() {  # package, what it is for
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing $1 (apt-get) for $2"
    apt-get install -y -q "$1" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null; }
  else
    echo "[bootstrap] $1 not found: install it (Debian/Ubuntu: apt-get install $1) or $2 is skipped" >&2
  fi
}
if [ "$task" = test ]; then
  command -v chromium >/dev/null 2>&1 || apt_install chromium "the plots-page test"
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
    || apt_install postgresql "the shared-tracking tests"
fi

case "$task" in
  study)
    [ -d .git ] || { echo "dvc repro needs a git checkout of crossmed" >&2; exit 1; }
    exec dvc repro "$@" ;;
  test)
    # Two workers (pytest-xdist), one test file each at a time: much of the suite is single-threaded (portable CPU
    # arithmetic, DVC and Flower processes waiting on each other), so two files at once use both cores.
    # Files go out in the order tests/conftest.py sets (the longest first; --no-loadscope-reorder keeps it).
    # CROSSMED_TEST_WORKERS=0 runs in one process.
    exec python -m pytest -n "${CROSSMED_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@" ;;
  *) usage ;;
esac
