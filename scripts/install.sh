#!/usr/bin/env bash
# Install rlrt-recipe into a virtual environment (default .venv) on a CPU-only machine.
# torch comes first, pinned, so that pip keeps the CPU build instead of pulling a multi-GB CUDA one
# when verl asks for torch. GPU machines: install the torch build you need first, then `.[gpu,test]`.
set -xeuo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
EXTRAS=${EXTRAS:-test}

cd "$(dirname "$0")/.."
[ -x "${VENV}/bin/python" ] || "${PYTHON}" -m venv "${VENV}"
# torch with pip, which reads pip's own configuration (find-links, index) wherever the wanted build lives;
# then the rest with uv, which keeps that torch and installs in ~50 s what takes pip ~2 min. uv does not
# read pip.conf: behind a mirror, set UV_INDEX_URL. --compile-bytecode: every Ray worker imports verl.
"${VENV}/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}" uv
"${VENV}/bin/uv" pip install --quiet --python "${VENV}/bin/python" --compile-bytecode -e ".[${EXTRAS}]"
"${VENV}/bin/python" -c "import verl, rlrt_recipe; print('rlrt-recipe', rlrt_recipe.__version__, 'on verl', verl.__version__)"
