#!/usr/bin/env bash
# The RLSD paper's own comparison (arXiv 2604.03128, Table 2) on Qwen3-VL-8B-Instruct: train every method with
# recipes/rlsd_paper.yaml, evaluate the untrained model and each method's last checkpoint on MMMU, MathVista,
# MathVision, ZeroBench and WeMath (accuracy, scripts/evaluate.sh), then write the table beside the paper's Table 2
# and the training curves.
# Hardware: the paper ran on 4 nodes × 8 NVIDIA H200 (141 GB) (RLSD Sec. 5.1), the recipe's trainer.nnodes=4 and
# trainer.n_gpus_per_node=8 (start Ray across the nodes first; on one node pass trainer.nnodes=1). Time, downloads and
# every choice of ours: docs/reproduce.md, "The RLSD paper's comparison". Data first: scripts/prepare_data.py (it
# writes data/mmfinereason_123k.parquet and the five benchmark files below).
#
#   bash scripts/reproduce_rlsd_table.sh
#   METHODS="grpo rlsd" STEPS=200 bash scripts/reproduce_rlsd_table.sh trainer.nnodes=1
#   VARIANT=official bash scripts/reproduce_rlsd_table.sh   # the official code's departures (recipes/rlsd_variant/)
#   bash scripts/reproduce_rlsd_table.sh --dry-run   # compose every config (--cfg job), print every launch
#   COMPOSE=0 bash scripts/reproduce_rlsd_table.sh --dry-run   # print every launch only (seconds)
# Extra arguments are Hydra overrides for every training and evaluation launch.
set -xeuo pipefail

DRY_RUN=0
if [[ "${1:-}" == --dry-run ]]; then
    DRY_RUN=1
    shift
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-rlsd_paper}
BACKBONE=${BACKBONE:-qwen3_vl_8b_instruct}  # RLSD Sec. 5.1: Qwen3-VL-8B-Instruct
VARIANT=${VARIANT:-paper}  # paper (RLSD Sec. 5.1) | official (the official code's λ decay, teacher sync, token mean)
# RLSD Table 2's methods (GRPO, OPSD, SDPO, GRPO+OPSD, RLSD) and its Fig. 1b's "GRPO (2× steps)" (grpo_2x: method=grpo
# for twice STEPS).
METHODS=${METHODS:-grpo grpo_2x opsd sdpo grpo_opsd_loss rlsd}
BASE_ROW=${BASE_ROW:-1}  # evaluate the untrained model: Table 2's "Base LLM" row
STEPS=${STEPS:-200}  # RLSD Sec. 5.1: 200 steps; the step-${STEPS} checkpoint is evaluated (grpo_2x: 2 × STEPS)
DATA_DIR=${DATA_DIR:-${ROOT}/data}
TRAIN_FILE=${TRAIN_FILE:-${DATA_DIR}/mmfinereason_123k.parquet}  # RLSD Sec. 5.1: MMFineReason-123K
# RLSD Table 2's benchmarks as scripts/prepare_data.py names the files (data_source mmmu, mathvista, mathvision,
# zerobench, wemath)
BENCHMARKS=${BENCHMARKS:-mmmu_val mathvista_testmini mathvision_test zerobench wemath}
# Evaluation, ours (the paper states accuracy and the lengths only): one sample per problem at temperature 0.7,
# top-p 0.8, top-k 20, the official code's in-training validation (its presence penalty 1.5 has no verl key)
N_SAMPLES=${N_SAMPLES:-1}
TEMPERATURE=${TEMPERATURE:-0.7}
TOP_P=${TOP_P:-0.8}
TOP_K=${TOP_K:-20}
PASS_K=${PASS_K:-1}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-4096}  # RLSD Sec. 5.1: the same lengths for training and evaluation
EVAL_RESPONSE_LENGTH=${EVAL_RESPONSE_LENGTH:-4096}
MAX_POSITIONS=${MAX_POSITIONS:-262144}  # Qwen3-VL-8B-Instruct's text config (evaluate.sh asks for unknown backbones)
OUTPUT_DIR=${OUTPUT_DIR:-${ROOT}/outputs/rlsd_paper/${VARIANT}}
DRY_RUN_DIR=${DRY_RUN_DIR:-${OUTPUT_DIR}/dry_run}  # composed configs of --dry-run

COMPOSE=${COMPOSE:-1}  # --dry-run: also compose each config with main_ppo --cfg job
export PYTHON RECIPE BACKBONE DATA_DIR TRAIN_FILE BENCHMARKS N_SAMPLES TEMPERATURE TOP_P TOP_K PASS_K \
    MAX_PROMPT_LENGTH EVAL_RESPONSE_LENGTH MAX_POSITIONS COMPOSE

# shellcheck source=reproduce_lib.sh
source "${ROOT}/scripts/reproduce_lib.sh"
# shellcheck disable=SC2086  # BENCHMARKS is a list of names
val_files=$(parquet_list "${DATA_DIR}" ${BENCHMARKS})

if [[ "${DRY_RUN}" == 0 && ! -f "${TRAIN_FILE}" ]]; then
    echo "no ${TRAIN_FILE}: run scripts/prepare_data.py for MMFineReason-123K and the five benchmarks first" >&2
    exit 1
fi
if [[ "${DRY_RUN}" == 1 ]]; then
    mkdir -p "${DRY_RUN_DIR}"
fi

evaluate_base_model "$@"

for name in ${METHODS}; do
    method=${name}
    steps=${STEPS}
    if [[ "${name}" == grpo_2x ]]; then  # RLSD Fig. 1b: GRPO at twice the steps (400)
        method=grpo
        steps=$(( 2 * STEPS ))
    fi
    run_dir=${OUTPUT_DIR}/${name}
    train_command=(
        "${PYTHON}" -m verl.trainer.main_ppo
        --config-dir "${ROOT}/recipes" --config-name "${RECIPE}"
        method="${method}" backbone="${BACKBONE}" rlsd_variant="${VARIANT}"
        data.train_files="${TRAIN_FILE}"
        data.val_files="[${val_files}]"  # loaded by verl, used only if trainer.test_freq > 0
        trainer.total_training_steps="${steps}"
        trainer.experiment_name="${name}"
        trainer.default_local_dir="${run_dir}/checkpoints"
        "$@"
    )
    train "${name}" "${train_command[@]}"
    evaluate "${name}" "${run_dir}/checkpoints/global_step_${steps}" "$@"
    table_runs+=(--run "${name}=${run_dir}/eval")
done

summarise table "${PYTHON}" "${ROOT}/scripts/make_table.py" --paper rlsd --n "${N_SAMPLES}" "${table_runs[@]}" \
    --out "${OUTPUT_DIR}/table"
