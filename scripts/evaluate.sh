#!/usr/bin/env bash
# avg@16 and pass@16 of one checkpoint (or of the untrained backbone) on the six benchmarks, through verl's own
# validation (no generation code of ours): main_ppo loads the checkpoint, runs one validation pass with 16 sampled
# responses per prompt at temperature 0.7, top-p 0.8, top-k 20 (RLRT "Evaluation", App. G.2) and exits.
# - verl logs avg@16 as val-core/<data_source>/acc/mean@16 in $EVAL_DIR/launch-<time>.jsonl;
# - verl dumps every sample with its correctness to $EVAL_DIR/samples/<step>.jsonl (trainer.validation_data_dir),
#   from which scripts/pass_at_k.py writes $EVAL_DIR/pass_at_k.json: avg@16 and the unbiased pass@k,
#   1 − C(n−c, k)/C(n, k) (not verl's best@k, a bootstrap).
# Build the table with  python scripts/make_table.py --backbone $BACKBONE --run rlrt=$EVAL_DIR --out results/table
#
#   CKPT=checkpoints/rlrt_paper_qwen3_4b_base/rlrt/global_step_100 METHOD=rlrt bash scripts/evaluate.sh
#   CKPT=base METHOD=base_model bash scripts/evaluate.sh   # the untrained backbone (the tables' "base model" row)
#   N_SAMPLES=256 BENCHMARKS="aime24 aime26" CURVE=1 bash scripts/evaluate.sh   # pass@k for k = 1…256 (Fig. 8)
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
METHOD=${METHOD:-grpo}  # names the output directory; the evaluation itself needs no method (see method= below)
BACKBONE=${BACKBONE:-qwen3_4b_base}
DATA_DIR=${DATA_DIR:-${ROOT}/data}  # scripts/prepare_data.py --out-dir data
TRAIN_FILE=${TRAIN_FILE:-${DATA_DIR}/dapo_math_17k.parquet}  # verl builds the train loader, never samples it here
# A global_step_<N> directory written by training (the step is read from its name), or "base" for the untrained model
CKPT=${CKPT:-${ROOT}/checkpoints/rlrt_paper_${BACKBONE}/${METHOD}/global_step_100}
EVAL_DIR=${EVAL_DIR:-${ROOT}/outputs/eval/${BACKBONE}/${METHOD}}
N_SAMPLES=${N_SAMPLES:-16}  # RLRT "Evaluation": 16 samples per problem
TEMPERATURE=${TEMPERATURE:-0.7}  # RLRT "Evaluation" (App. G.2): temperature 0.7, top-p 0.8, top-k 20
TOP_P=${TOP_P:-0.8}
TOP_K=${TOP_K:-20}
PASS_K=${PASS_K:-"1 ${N_SAMPLES}"}  # the k of pass@k written to pass_at_k.json; CURVE=1: every k from 1 to N_SAMPLES
CURVE=${CURVE:-0}
BENCHMARKS=${BENCHMARKS:-aime24 aime25 aime26 hmmt26_feb amc23 math500}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-2048}  # RLRT Table 5
# RLRT "Evaluation": max response 38 912 tokens. Where the backbone's context is shorter (the base models' 32 768
# positions), ours: cap at max_position_embeddings − max_prompt_length, with no rope scaling.
case ${BACKBONE} in
    qwen3_4b_base | qwen3_8b_base) MAX_POSITIONS=32768 ;;
    qwen3_4b_instruct_2507) MAX_POSITIONS=262144 ;;
    qwen3_8b) MAX_POSITIONS=40960 ;;
    *) MAX_POSITIONS=${MAX_POSITIONS:?set MAX_POSITIONS (max_position_embeddings of the model) for BACKBONE=${BACKBONE}} ;;
esac
EVAL_RESPONSE_LENGTH=${EVAL_RESPONSE_LENGTH:-$(( 38912 < MAX_POSITIONS - MAX_PROMPT_LENGTH ? 38912 : MAX_POSITIONS - MAX_PROMPT_LENGTH ))}

val_files=""
for name in ${BENCHMARKS}; do
    val_files+="${val_files:+,}${DATA_DIR}/${name}.parquet"
done
if [[ "${CKPT}" == base ]]; then
    checkpoint=(trainer.resume_mode=disable)  # the untrained backbone: actor_rollout_ref.model.path as is
else
    checkpoint=(trainer.resume_mode=resume_path trainer.resume_from_path="${CKPT}")
fi

command=(
    "${PYTHON}" -m verl.trainer.main_ppo
    --config-dir "${ROOT}/recipes" --config-name "${RECIPE}"
    # ours: evaluation trains nothing, so every checkpoint is evaluated on verl's stock trainer with the GRPO method
    # group (no teacher, no reference model); the checkpoint holds the actor's weights whatever method trained them
    method=grpo backbone="${BACKBONE}"
    data.train_files="${TRAIN_FILE}"
    data.val_files="[${val_files}]"
    data.max_prompt_length="${MAX_PROMPT_LENGTH}"
    data.max_response_length="${EVAL_RESPONSE_LENGTH}"
    trainer.val_before_train=True  # val_only=True alone would start training
    trainer.val_only=True
    "${checkpoint[@]}"
    trainer.logger=[console,file]
    trainer.validation_data_dir="${EVAL_DIR}/samples"  # every sample with its correctness, for pass@k
    actor_rollout_ref.rollout.val_kwargs.n="${N_SAMPLES}"
    actor_rollout_ref.rollout.val_kwargs.do_sample=True  # verl's validation default is greedy
    actor_rollout_ref.rollout.val_kwargs.temperature="${TEMPERATURE}"
    actor_rollout_ref.rollout.val_kwargs.top_p="${TOP_P}"
    actor_rollout_ref.rollout.val_kwargs.top_k="${TOP_K}"
    "$@"
)
pass_at_k=("${PYTHON}" "${ROOT}/scripts/pass_at_k.py" --dump "${EVAL_DIR}/samples" --val-files "${val_files}"
           --out "${EVAL_DIR}/pass_at_k.json")
if [[ "${CURVE}" == 1 ]]; then
    pass_at_k+=(--curve)
else
    for k in ${PASS_K}; do pass_at_k+=(--k "${k}"); done
fi

if [[ "${DRY_RUN}" == 1 ]]; then
    printf '%q ' "${command[@]}"
    echo
    echo "pass@k: $(printf '%q ' "${pass_at_k[@]}")"
    if [[ "${COMPOSE:-1}" == 1 ]]; then  # compose the config too (main_ppo --cfg job)
        "${command[@]}" --cfg job
    fi
    exit 0
fi

if [[ "${CKPT}" != base && ! -d "${CKPT}" ]]; then
    echo "no checkpoint directory ${CKPT}: set CKPT to a global_step_<N> directory of a training run, or CKPT=base" >&2
    exit 1
fi
mkdir -p "${EVAL_DIR}"
rm -rf "${EVAL_DIR}/samples"  # a stale dump would be read instead of this launch's
# One file per launch: verl's file logger truncates its file; make_table.py reads the whole directory
export VERL_FILE_LOGGER_PATH=${EVAL_DIR}/launch-$(date +%Y%m%d-%H%M%S).jsonl
"${command[@]}"
echo "metrics log: ${VERL_FILE_LOGGER_PATH}"
"${pass_at_k[@]}"
