#!/usr/bin/env bash
# RLRT for a few steps through verl's real main_ppo loop on CPU (the teacher step included), with a tiny
# random model and the seeded test reward: checks wiring, config and metrics, not learning (docs/cpu.md).
# Builds what is missing. Extra arguments are passed to main_ppo as Hydra overrides, e.g.
# `algorithm.adv_estimator=grpo` (plain GRPO) or `trainer.total_training_steps=3`. Ends with a per-step
# summary: reward, rows the teacher scored, Δ mean, the teacher's share of the step, and the log's path.
# VL=1: image prompts instead (a tiny Qwen3-VL model and a generated image-counting task, +env=cpu_vl), e.g.
# `VL=1 bash scripts/run_cpu_demo.sh algorithm.adv_estimator=rlsd` (RLSD's own setting: image prompts).
set -xeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The venv scripts/install.sh makes, if present; any python with rlrt-recipe installed otherwise.
if [[ -x "${ROOT}/.venv/bin/python" ]]; then PYTHON=${PYTHON:-${ROOT}/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
ARTIFACTS=${ARTIFACTS:-${ROOT}/artifacts/cpu_demo}
VL=${VL:-0}
if [[ "${VL}" == 1 ]]; then
    MODEL_DIR=${MODEL_DIR:-${ARTIFACTS}/tiny_vl_model}
    DATA_DIR=${DATA_DIR:-${ARTIFACTS}/image_data}
    EXPERIMENT_DIR=${EXPERIMENT_DIR:-${ARTIFACTS}/run_vl}
    ENV_CONFIG=cpu_vl
    MAKE_ARGS=(--vl)
else
    MODEL_DIR=${MODEL_DIR:-${ARTIFACTS}/tiny_model}
    DATA_DIR=${DATA_DIR:-${ARTIFACTS}/data}
    EXPERIMENT_DIR=${EXPERIMENT_DIR:-${ARTIFACTS}/run}
    ENV_CONFIG=cpu
    MAKE_ARGS=()
fi
STEPS=${STEPS:-2}
RECIPE=${RECIPE:-cpu_demo}

if [[ ! -f "${MODEL_DIR}/config.json" || ! -f "${DATA_DIR}/train.parquet" ]]; then
    "${PYTHON}" "${ROOT}/scripts/make_tiny_model.py" "${MAKE_ARGS[@]}" --out "${MODEL_DIR}" --data-dir "${DATA_DIR}"
fi

mkdir -p "${EXPERIMENT_DIR}"
METRICS_LOG=${EXPERIMENT_DIR}/launch-$(date +%Y%m%d-%H%M%S).jsonl

export VERL_PLATFORM=cpu
export VERL_FILE_LOGGER_PATH=${METRICS_LOG}  # one file per launch: verl's file logger truncates its file
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export WANDB_MODE=${WANDB_MODE:-disabled}
export TOKENIZERS_PARALLELISM=false

"${PYTHON}" -m verl.trainer.main_ppo \
    --config-dir "${ROOT}/recipes" --config-name "${RECIPE}" \
    +env="${ENV_CONFIG}" \
    data.train_files="${DATA_DIR}/train.parquet" \
    data.val_files="${DATA_DIR}/test.parquet" \
    actor_rollout_ref.model.path="${MODEL_DIR}" \
    trainer.total_training_steps="${STEPS}" \
    trainer.default_local_dir="${EXPERIMENT_DIR}/checkpoints" \
    "$@"

set +x
"${PYTHON}" "${ROOT}/scripts/summarize_run.py" "${METRICS_LOG}"
