#!/usr/bin/env bash
# The RLRT paper's comparison on one backbone: train every method with recipes/rlrt_paper.yaml, evaluate its
# last checkpoint (avg@16, scripts/evaluate.sh), then write the table beside the paper's numbers and the curves.
# Hardware and assumptions: docs/reproduce.md. Data first: python scripts/prepare_data.py --out-dir data
#
#   BACKBONE=qwen3_4b_base bash scripts/reproduce_rlrt_table.sh
#   METHODS="grpo rlrt" STEPS=100 bash scripts/reproduce_rlrt_table.sh trainer.n_gpus_per_node=4
#   bash scripts/reproduce_rlrt_table.sh --dry-run   # compose every config (--cfg job), print every command
# Extra arguments are Hydra overrides for every training and evaluation launch.
set -xeuo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-rlrt_paper}
BACKBONE=${BACKBONE:-qwen3_4b_base}
# The RLRT comparison's methods (RLRT Tables 1/3): SDPO on the instruct backbone, SDPO and SRPO on Qwen3-8B, as in
# the paper's tables (neither on base models, where they collapse). Also available: rlrt_all, rlrt_teacher_up
# (RLRT's ablations), opsd, grpo_opsd_loss (RLSD's baselines), and entropy_bonus, grpo_opsd (in neither paper).
case ${BACKBONE} in
    qwen3_4b_instruct_2507) DEFAULT_METHODS="grpo grpo_eb sdpo rlsd rlrt" ;;
    qwen3_8b) DEFAULT_METHODS="grpo grpo_eb sdpo srpo rlsd rlrt" ;;
    *) DEFAULT_METHODS="grpo grpo_eb rlsd rlrt" ;;
esac
METHODS=${METHODS:-${DEFAULT_METHODS}}
STEPS=${STEPS:-100}  # training steps (ours: the paper's curves span 100); the step-${STEPS} checkpoint is evaluated
DATA_DIR=${DATA_DIR:-${ROOT}/data}
BENCHMARKS=${BENCHMARKS:-aime24 aime25 aime26 hmmt26_feb amc23 math500}
OUTPUT_DIR=${OUTPUT_DIR:-${ROOT}/outputs/rlrt_paper/${BACKBONE}}
DRY_RUN_DIR=${DRY_RUN_DIR:-${OUTPUT_DIR}/dry_run}  # composed configs of --dry-run

export PYTHON RECIPE BACKBONE DATA_DIR BENCHMARKS

val_files=""
for name in ${BENCHMARKS}; do
    val_files+="${val_files:+,}${DATA_DIR}/${name}.parquet"
done

if [[ "${DRY_RUN}" == 0 && ! -f "${DATA_DIR}/dapo_math_17k.parquet" ]]; then
    echo "no ${DATA_DIR}/dapo_math_17k.parquet: run python scripts/prepare_data.py --out-dir ${DATA_DIR}" >&2
    exit 1
fi
if [[ "${DRY_RUN}" == 1 ]]; then
    mkdir -p "${DRY_RUN_DIR}"
fi

table_runs=()
curve_runs=()
for method in ${METHODS}; do
    run_dir=${OUTPUT_DIR}/${method}
    train=(
        "${PYTHON}" -m verl.trainer.main_ppo
        --config-dir "${ROOT}/recipes" --config-name "${RECIPE}"
        method="${method}" backbone="${BACKBONE}"
        data.train_files="${DATA_DIR}/dapo_math_17k.parquet"
        data.val_files="[${val_files}]"  # loaded by verl, used only if trainer.test_freq > 0
        trainer.total_training_steps="${STEPS}"
        trainer.default_local_dir="${run_dir}/checkpoints"
        "$@"
    )
    evaluate=(
        env METHOD="${method}" CKPT="${run_dir}/checkpoints/global_step_${STEPS}" EVAL_DIR="${run_dir}/eval"
        bash "${ROOT}/scripts/evaluate.sh"
    )
    if [[ "${DRY_RUN}" == 1 ]]; then
        echo "train ${method}: VERL_FILE_LOGGER_PATH=${run_dir}/train/launch-<time>.jsonl $(printf '%q ' "${train[@]}")"
        "${train[@]}" --cfg job > "${DRY_RUN_DIR}/${method}.train.yaml"
        "${evaluate[@]}" --dry-run "$@" > "${DRY_RUN_DIR}/${method}.eval.txt"
        echo "evaluate ${method}: $(head -n 1 "${DRY_RUN_DIR}/${method}.eval.txt")"
    else
        mkdir -p "${run_dir}/train"
        # One file per launch: verl's file logger truncates its file
        VERL_FILE_LOGGER_PATH=${run_dir}/train/launch-$(date +%Y%m%d-%H%M%S).jsonl "${train[@]}"
        "${evaluate[@]}" "$@"
    fi
    table_runs+=(--run "${method}=${run_dir}/eval")
    curve_runs+=(--run "${method}=${run_dir}/train")
done

table=("${PYTHON}" "${ROOT}/scripts/make_table.py" "${table_runs[@]}" --out "${OUTPUT_DIR}/table")
curves=("${PYTHON}" "${ROOT}/scripts/plot_curves.py" "${curve_runs[@]}" --out "${OUTPUT_DIR}/curves.png")
if [[ "${DRY_RUN}" == 1 ]]; then
    echo "table: $(printf '%q ' "${table[@]}")"
    echo "curves: $(printf '%q ' "${curves[@]}")"
    echo "composed configs: ${DRY_RUN_DIR}"
    exit 0
fi
"${table[@]}"
"${curves[@]}"
