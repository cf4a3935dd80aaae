#!/usr/bin/env bash
# The CPU evidence for the papers' two claims (docs/toy_comparison.md, "Exploration"): GRPO, RLSD and RLRT on the
# "reach the target" task (examples/rlrt_explore: many distinct correct paths per problem, held-out problems), the
# same warm-started 0.56 M-parameter model for every run, each through verl's real `python -m verl.trainer.main_ppo`
# loop; after the last step verl's validation samples every held-out problem N_EVAL times at temperature 1. Then
# examples/rlrt_explore/report.py: training reward per step, held-out pass@k (k = 1 … N_EVAL, the unbiased
# estimator) and distinct correct paths per problem, each with a 95 % interval across seeds; one figure per claim.
#   bash scripts/explore_cpu.sh            # the experiment: 3 methods × 5 seeds × 50 steps
#   bash scripts/explore_cpu.sh --quick    # every piece once: 1 seed, 2 steps, 8 samples per held-out problem
# Extra arguments are Hydra overrides for every launch. Launches run one at a time.
set -xeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then
    QUICK=1
    shift
fi
if [[ -x "${ROOT}/.venv/bin/python" ]]; then PYTHON=${PYTHON:-${ROOT}/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
OUT=${OUT:-${ROOT}/artifacts/explore$([[ ${QUICK} == 1 ]] && echo _quick || true)}
MODEL_DIR=${MODEL_DIR:-${OUT}/model}
DATA_DIR=${DATA_DIR:-${OUT}/data}
METHODS=${METHODS:-"grpo rlsd rlrt"}
SEEDS=${SEEDS:-$([[ ${QUICK} == 1 ]] && echo 1 || echo "1 2 3 4 5")}
STEPS=${STEPS:-$([[ ${QUICK} == 1 ]] && echo 2 || echo 50)}
BATCH=${BATCH:-$([[ ${QUICK} == 1 ]] && echo 2 || echo 4)}  # prompts per step (ours)
N=${N:-8}  # rollouts per prompt (ours; the papers' 8)
N_EVAL=${N_EVAL:-$([[ ${QUICK} == 1 ]] && echo 8 || echo 64)}  # samples per held-out problem: pass@k up to k = N_EVAL
HELDOUT=${HELDOUT:-$([[ ${QUICK} == 1 ]] && echo 4 || echo 24)}  # held-out problems evaluated (ours)
LR=${LR:-1e-4}  # one lr for every method (ours: at 1e-3 GRPO lost the answer format within 5 steps; 1e-4 learned)
# RLSD's λ decays over K steps (RLSD Sec. 5.1: 50 of 200); ours: the same quarter of this run's steps
LAMBDA_DECAY=${LAMBDA_DECAY:-$(( STEPS / 4 > 1 ? STEPS / 4 : 1 ))}

export PYTHONPATH="${ROOT}/examples${PYTHONPATH:+:${PYTHONPATH}}"
if [[ ! -f "${MODEL_DIR}/warm_start.txt" || ! -f "${DATA_DIR}/heldout.parquet" ]]; then
    # the quick run only needs a working model: its short warm start may miss the pass-rate bounds
    "${PYTHON}" -m rlrt_explore --out "${MODEL_DIR}" --data-dir "${DATA_DIR}" --heldout-problems "${HELDOUT}" \
        $([[ ${QUICK} == 1 ]] && echo --steps 60 || true) || [[ ${QUICK} == 1 ]]
fi

export VERL_PLATFORM=cpu
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export WANDB_MODE=${WANDB_MODE:-disabled}
export TOKENIZERS_PARALLELISM=false

runs=()
for seed in ${SEEDS}; do
    for method in ${METHODS}; do
        case ${method} in
            grpo) method_args=(algorithm.adv_estimator=grpo trainer.v1.trainer_mode=sync) ;;
            # RLRT's own rule: no teacher without a complete correct sibling
            rlrt) method_args=(algorithm.adv_estimator=rlrt trainer.v1.trainer_mode=rlrt_sync rlrt.sibling_fallback=none) ;;
            rlsd) method_args=(algorithm.adv_estimator=rlsd trainer.v1.trainer_mode=rlrt_sync
                               ++rlrt.lambda_decay_steps="${LAMBDA_DECAY}") ;;
            *) echo "unknown method ${method} (grpo, rlsd, rlrt)" >&2; exit 2 ;;
        esac
        run_dir=${OUT}/runs/${method}/seed${seed}
        rm -rf "${run_dir}"  # a stale launch file would be merged into this run's metrics
        mkdir -p "${run_dir}"
        VERL_FILE_LOGGER_PATH=${run_dir}/launch-$(date +%Y%m%d-%H%M%S).jsonl \
        "${PYTHON}" -m verl.trainer.main_ppo \
            --config-dir "${ROOT}/recipes" --config-name cpu_demo \
            +env=cpu \
            "${method_args[@]}" \
            reward.custom_reward_function.path="${ROOT}/examples/rlrt_explore/reward.py" \
            reward.custom_reward_function.name=compute_score \
            data.train_files="${DATA_DIR}/train.parquet" \
            data.val_files="${DATA_DIR}/heldout.parquet" \
            data.train_batch_size="${BATCH}" \
            data.max_prompt_length=64 data.max_response_length=24 \
            data.seed="${seed}" \
            actor_rollout_ref.model.path="${MODEL_DIR}" \
            actor_rollout_ref.rollout.n="${N}" \
            actor_rollout_ref.rollout.seed="${seed}" \
            actor_rollout_ref.rollout.val_kwargs.n="${N_EVAL}" \
            actor_rollout_ref.rollout.val_kwargs.do_sample=true \
            actor_rollout_ref.rollout.val_kwargs.temperature=1.0 \
            actor_rollout_ref.actor.optim.lr="${LR}" \
            actor_rollout_ref.actor.ppo_mini_batch_size=$((BATCH / 2)) \
            actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            trainer.total_training_steps="${STEPS}" \
            trainer.val_before_train=false \
            trainer.test_freq="${STEPS}" \
            trainer.validation_data_dir="${run_dir}/val" \
            trainer.save_freq=-1 \
            trainer.experiment_name="explore_${method}_seed${seed}" \
            trainer.default_local_dir="${run_dir}/checkpoints" \
            "$@"
        runs+=(--run "${method}=${run_dir}")
    done
done

"${PYTHON}" "${ROOT}/examples/rlrt_explore/report.py" "${runs[@]}" --out "${OUT}/summary"
