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
"${VENV}/bin/python" -m pip install --quiet --upgrade pip
"${VENV}/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}"
"${VENV}/bin/python" -m pip install --quiet -e ".[${EXTRAS}]"
"${VENV}/bin/python" -c "import verl, rlrt_recipe; print('rlrt-recipe', rlrt_recipe.__version__, 'on verl', verl.__version__)"
