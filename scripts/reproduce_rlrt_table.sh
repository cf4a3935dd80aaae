#!/usr/bin/env bash
# The RLRT paper's comparison on one backbone: train every method with recipes/rlrt_paper.yaml, evaluate the
# untrained backbone and each method's last checkpoint (avg@16 and pass@16, scripts/evaluate.sh), then write the
# table beside the paper's Tables 1/3 and the training curves. With --exploration: the paper's Fig. 8 instead.
# Hardware and assumptions: docs/reproduce.md. Data first: python scripts/prepare_data.py --out-dir data
#
#   BACKBONE=qwen3_4b_base bash scripts/reproduce_rlrt_table.sh
#   METHODS="grpo rlrt" STEPS=100 bash scripts/reproduce_rlrt_table.sh trainer.n_gpus_per_node=4
#   ABLATIONS="rlrt_all rlrt_teacher_up" EPS_W_SWEEP="0.2 0.5 1.0" bash scripts/reproduce_rlrt_table.sh
#   bash scripts/reproduce_rlrt_table.sh --exploration   # Qwen3-8B-Base: GRPO, GRPO+EB, RLRT; pass@k, k = 1…256
#   bash scripts/reproduce_rlrt_table.sh --dry-run   # compose every config (--cfg job), print every launch
#   COMPOSE=0 bash scripts/reproduce_rlrt_table.sh --dry-run   # print every launch only (seconds)
# Extra arguments are Hydra overrides for every training and evaluation launch.
set -xeuo pipefail

DRY_RUN=0
EXPLORATION=0
while [[ "${1:-}" == --dry-run || "${1:-}" == --exploration ]]; do
    [[ "$1" == --dry-run ]] && DRY_RUN=1
    [[ "$1" == --exploration ]] && EXPLORATION=1
    shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-rlrt_paper}
if [[ "${EXPLORATION}" == 1 ]]; then
    # RLRT Fig. 8: Qwen3-8B-Base; GRPO, GRPO+EB, DIVER (not implemented here) and RLRT; 256 samples per problem on
    # AIME24 and AIME26; pass@k for k = 1…256 with the unbiased estimator
    BACKBONE=${BACKBONE:-qwen3_8b_base}
    DEFAULT_METHODS="grpo grpo_eb rlrt"
    BENCHMARKS=${BENCHMARKS:-aime24 aime26}
    N_SAMPLES=${N_SAMPLES:-256}
    BASE_ROW=${BASE_ROW:-0}  # Fig. 8 has no base-model curve
    export CURVE=1
else
    BACKBONE=${BACKBONE:-qwen3_4b_base}
    # The methods of RLRT Tables 1/3 per backbone: GRPO, RLSD, RLRT everywhere; SDPO on Qwen3-4B-Instruct-2507; SDPO
    # and SRPO on Qwen3-8B (neither on base models, where they collapse). Also available: grpo_eb (the exploration
    # baseline), opsd, grpo_opsd_loss (RLSD's baselines), entropy_bonus, grpo_opsd (in neither paper).
    case ${BACKBONE} in
        qwen3_4b_instruct_2507) DEFAULT_METHODS="grpo sdpo rlsd rlrt" ;;
        qwen3_8b) DEFAULT_METHODS="grpo sdpo srpo rlsd rlrt" ;;
        *) DEFAULT_METHODS="grpo rlsd rlrt" ;;
    esac
    BENCHMARKS=${BENCHMARKS:-aime24 aime25 aime26 hmmt26_feb amc23 math500}
    N_SAMPLES=${N_SAMPLES:-16}
fi
METHODS=${METHODS:-${DEFAULT_METHODS}}
# RLRT's ablations (figures only in the paper): rlrt_all (no gate; its Fig. 9a on the instruct backbone),
# rlrt_teacher_up (teacher-up on correct rollouts, Fig. 1a), and the ε_w sweep (RLRT Table 5: {0.2, 0.5, 1.0})
ABLATIONS=${ABLATIONS:-}
EPS_W_SWEEP=${EPS_W_SWEEP:-}
BASE_ROW=${BASE_ROW:-1}  # evaluate the untrained backbone: the tables' "base model" row
STEPS=${STEPS:-100}  # training steps (ours: the paper's curves span 100); the step-${STEPS} checkpoint is evaluated
DATA_DIR=${DATA_DIR:-${ROOT}/data}
OUTPUT_DIR=${OUTPUT_DIR:-${ROOT}/outputs/rlrt_paper/${BACKBONE}$([[ ${EXPLORATION} == 1 ]] && echo _exploration || true)}
DRY_RUN_DIR=${DRY_RUN_DIR:-${OUTPUT_DIR}/dry_run}  # composed configs of --dry-run

COMPOSE=${COMPOSE:-1}  # --dry-run: also compose each config with main_ppo --cfg job
export PYTHON RECIPE BACKBONE DATA_DIR BENCHMARKS N_SAMPLES COMPOSE

# shellcheck source=reproduce_lib.sh
source "${ROOT}/scripts/reproduce_lib.sh"
# shellcheck disable=SC2086  # BENCHMARKS is a list of names
val_files=$(parquet_list "${DATA_DIR}" ${BENCHMARKS})

if [[ "${DRY_RUN}" == 0 && ! -f "${DATA_DIR}/dapo_math_17k.parquet" ]]; then
    echo "no ${DATA_DIR}/dapo_math_17k.parquet: run python scripts/prepare_data.py --out-dir ${DATA_DIR}" >&2
    exit 1
fi
if [[ "${DRY_RUN}" == 1 ]]; then
    mkdir -p "${DRY_RUN_DIR}"
fi

evaluate_base_model "$@"

runs=()  # NAME:METHOD:OVERRIDE (the override may be empty)
for method in ${METHODS} ${ABLATIONS}; do runs+=("${method}:${method}:"); done
for eps_w in ${EPS_W_SWEEP}; do runs+=("rlrt_eps_w_${eps_w}:rlrt:rlrt.eps_w=${eps_w}"); done

for run in "${runs[@]}"; do
    IFS=: read -r name method override <<< "${run}"
    run_dir=${OUTPUT_DIR}/${name}
    train_command=(
        "${PYTHON}" -m verl.trainer.main_ppo
        --config-dir "${ROOT}/recipes" --config-name "${RECIPE}"
        method="${method}" backbone="${BACKBONE}"
        data.train_files="${DATA_DIR}/dapo_math_17k.parquet"
        data.val_files="[${val_files}]"  # loaded by verl, used only if trainer.test_freq > 0
        trainer.total_training_steps="${STEPS}"
        trainer.experiment_name="${name}"
        trainer.default_local_dir="${run_dir}/checkpoints"
        ${override:+"${override}"}
        "$@"
    )
    train "${name}" "${train_command[@]}"
    evaluate "${name}" "${run_dir}/checkpoints/global_step_${STEPS}" "$@"
    table_runs+=(--run "${name}=${run_dir}/eval")
done

if [[ "${EXPLORATION}" == 1 ]]; then
    summarise "pass@k plot" "${PYTHON}" "${ROOT}/scripts/plot_pass_at_k.py" "${table_runs[@]}" \
        --out "${OUTPUT_DIR}/pass_at_k.png"
else
    summarise table "${PYTHON}" "${ROOT}/scripts/make_table.py" --backbone "${BACKBONE}" "${table_runs[@]}" \
        --out "${OUTPUT_DIR}/table"
fi
