#!/usr/bin/env bash
# Creates .venv (Python 3.11) with tfcomp installed in editable mode, its custom ops compiled
# with g++ against the pinned TensorFlow, and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in "${PYTHON:-}" python3.11 python3; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! command -v g++ >/dev/null; then
  echo "setup: g++ is required to compile tfcomp's ops (Debian/Ubuntu: apt-get install g++)" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
# TensorFlow first, so the ops can be compiled against it without an isolated build env.
.venv/bin/pip install -q --disable-pip-version-check "tensorflow==2.14.1" setuptools wheel
.venv/bin/pip install -q --disable-pip-version-check --no-build-isolation -e ".[test,bench]"
