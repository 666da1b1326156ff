#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#
# The CPU path pins torch==2.13.0 before installing the package, so the package's own torch
# range is already satisfied and pip does not pull a multi-GB CUDA build. On a GPU machine,
# install your CUDA build of torch first (or set BTNET_TORCH="torch==X.Y.Z") and run this.
# With --test it also installs the test extras and, as root, Debian's chromium for the
# browser tests (they skip with a reason where it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate

stamp=.venv/.btnet-setup
extras="."
[ "$want_test" = 1 ] && extras=".[dev]"
key="$(sha256sum pyproject.toml | cut -c1-16) $extras"
if [ ! -f "$stamp" ] || ! grep -qxF "$key" "$stamp"; then
    python -m pip install -q --upgrade pip
    if ! python -c "import torch" 2>/dev/null; then
        python -m pip install -q "${BTNET_TORCH:-torch==2.13.0}"
    fi
    python -m pip install -q -e "$extras"
    echo "$key" >> "$stamp"
fi

if [ "$want_test" = 1 ] && [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null; then
    echo "setup: installing Debian chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "setup: chromium not installed; browser tests will skip" >&2
fi
