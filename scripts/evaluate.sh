#!/usr/bin/env bash
# avg@16 of one checkpoint on the six benchmarks, through verl's own validation (no generation code of ours):
# main_ppo loads the checkpoint, runs one validation pass with 16 sampled responses per prompt and exits.
# The metrics land in $EVAL_DIR/launch-<time>.jsonl as val-core/<data_source>/acc/mean@16; build the table with
#   python scripts/make_table.py --run rlrt=$EVAL_DIR --out results/table
#
#   CKPT=checkpoints/rlrt_paper_qwen3_4b_base/rlrt/global_step_100 METHOD=rlrt bash scripts/evaluate.sh
#   bash scripts/evaluate.sh --dry-run      # compose the config (--cfg job) and print the command only
# Extra arguments are passed to main_ppo as Hydra overrides (e.g. +env=cpu, actor_rollout_ref.model.path=...).
set -xeuo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
RECIPE=${RECIPE:-rlrt_paper}
METHOD=${METHOD:-grpo}  # the method group the checkpoint was trained with
BACKBONE=${BACKBONE:-qwen3_4b_base}
DATA_DIR=${DATA_DIR:-${ROOT}/data}  # scripts/prepare_data.py --out-dir data
TRAIN_FILE=${TRAIN_FILE:-${DATA_DIR}/dapo_math_17k.parquet}  # verl builds the train loader, never samples it here
# A global_step_<N> directory written by training (the step is read from its name)
CKPT=${CKPT:-${ROOT}/checkpoints/rlrt_paper_${BACKBONE}/${METHOD}/global_step_100}
EVAL_DIR=${EVAL_DIR:-${ROOT}/outputs/eval/${BACKBONE}/${METHOD}}
N_SAMPLES=${N_SAMPLES:-16}
TEMPERATURE=${TEMPERATURE:-0.7}  # RLRT "Evaluation": temperature 0.7, top-p 0.8, top-k 20
TOP_P=${TOP_P:-0.8}
TOP_K=${TOP_K:-20}
BENCHMARKS=${BENCHMARKS:-aime24 aime25 aime26 hmmt26_feb amc23 math500}

val_files=""
for name in ${BENCHMARKS}; do
    val_files+="${val_files:+,}${DATA_DIR}/${name}.parquet"
done

command=(
    "${PYTHON}" -m verl.trainer.main_ppo
    --config-dir "${ROOT}/recipes" --config-name "${RECIPE}"
    method="${METHOD}" backbone="${BACKBONE}"
    data.train_files="${TRAIN_FILE}"
    data.val_files="[${val_files}]"
    trainer.val_before_train=True  # val_only=True alone would start training
    trainer.val_only=True
    trainer.resume_mode=resume_path
    trainer.resume_from_path="${CKPT}"
    trainer.logger=[console,file]
    actor_rollout_ref.rollout.val_kwargs.n="${N_SAMPLES}"
    actor_rollout_ref.rollout.val_kwargs.do_sample=True  # verl's validation default is greedy
    actor_rollout_ref.rollout.val_kwargs.temperature="${TEMPERATURE}"
    actor_rollout_ref.rollout.val_kwargs.top_p="${TOP_P}"
    actor_rollout_ref.rollout.val_kwargs.top_k="${TOP_K}"
    "$@"
)

if [[ "${DRY_RUN}" == 1 ]]; then
    printf '%q ' "${command[@]}"
    echo
    "${command[@]}" --cfg job
    exit 0
fi

if [[ ! -d "${CKPT}" ]]; then
    echo "no checkpoint directory ${CKPT}: set CKPT to a global_step_<N> directory of a training run" >&2
    exit 1
fi
mkdir -p "${EVAL_DIR}"
# One file per launch: verl's file logger truncates its file; make_table.py reads the whole directory
export VERL_FILE_LOGGER_PATH=${EVAL_DIR}/launch-$(date +%Y%m%d-%H%M%S).jsonl
"${command[@]}"
echo "metrics log: ${VERL_FILE_LOGGER_PATH}"
