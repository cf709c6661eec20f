#!/usr/bin/env bash
# Installs everything FashionChameleon needs on a fresh Debian 12 machine with Python 3.11:
# system packages (ffmpeg for streaming video; chromium for browser tests with --dev) and a virtual
# environment .venv with the package and its Python requirements.
#   bash scripts/setup.sh         # runtime (the demo)
#   bash scripts/setup.sh --dev   # plus everything the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
SUDO=""
[[ "$(id -u)" != "0" ]] && SUDO="sudo"

debs=(ffmpeg)
((DEV)) && debs+=(chromium fonts-dejavu-core)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
python3 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip_install() {
  # keeps pip's exit status; drops the harmless notes about local wheel folders some machines configure
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip >/dev/null
# torch first and pinned: the pinned release is the local CPU wheel here and the CUDA wheel on a GPU Space.
pip_install "torch==2.13.0"
if ((DEV)); then
  pip_install -e ".[dev]"
else
  pip_install -e .
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, fashionchameleon; print("torch", torch.__version__)')" >&2
