#!/usr/bin/env bash
# GRPO, GRPO+EB, RLSD, RLRT, OPSD, SDPO and SRPO on the CPU toy task (single-digit sums, docs/toy_comparison.md): the same
# warm-started 0.56 M-parameter model, data, steps and seeds for every method, each through verl's real
# `python -m verl.trainer.main_ppo` loop with the math-verify reward; then a table and a PNG of reward,
# response length, entropy and rlrt/* side by side. Launches run one at a time.
#   bash scripts/compare_methods_cpu.sh            # default size
#   bash scripts/compare_methods_cpu.sh --quick    # CI smoke: every method, 2 steps, tiny batch
#   SEEDS="1 2 3" bash scripts/compare_methods_cpu.sh   # mean ± std over seeds (about 3x the time)
# Extra arguments after --quick (or alone) are Hydra overrides for every launch; ARGS_<method> (e.g.
# ARGS_rlsd="+rlrt.lambda_decay_steps=1") holds overrides for that method's launches only.
set -xeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then
    QUICK=1
    shift
fi
# The venv scripts/install.sh makes, if present; any python with rlrt-recipe installed otherwise.
if [[ -x "${ROOT}/.venv/bin/python" ]]; then PYTHON=${PYTHON:-${ROOT}/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
OUT=${OUT:-${ROOT}/artifacts/toy_comparison$([[ ${QUICK} == 1 ]] && echo _quick || true)}
MODEL_DIR=${MODEL_DIR:-${OUT}/model}
DATA_DIR=${DATA_DIR:-${OUT}/data}
METHODS=${METHODS:-"grpo rlsd rlrt opsd"}
SEEDS=${SEEDS:-1}
STEPS=${STEPS:-$([[ ${QUICK} == 1 ]] && echo 2 || echo 12)}
BATCH=${BATCH:-$([[ ${QUICK} == 1 ]] && echo 2 || echo 4)}  # prompts per step
N=${N:-$([[ ${QUICK} == 1 ]] && echo 4 || echo 8)}  # rollouts per prompt
LR=${LR:-1e-3}  # one lr for every method (a tiny model moves nowhere at the recipes' 1e-6)
WARM_STEPS=${WARM_STEPS:-$([[ ${QUICK} == 1 ]] && echo 150 || echo 400)}
LAST=${LAST:-3}  # final value = mean over the last LAST steps

if [[ ! -f "${MODEL_DIR}/warm_start.txt" || ! -f "${DATA_DIR}/train.parquet" ]]; then
    # QUICK's short warm start may miss the semantic bounds; the runs only need a working model.
    "${PYTHON}" "${ROOT}/scripts/warm_start.py" --out "${MODEL_DIR}" --data-dir "${DATA_DIR}" \
        --steps "${WARM_STEPS}" || [[ ${QUICK} == 1 ]]
fi

export VERL_PLATFORM=cpu
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export WANDB_MODE=${WANDB_MODE:-disabled}
export TOKENIZERS_PARALLELISM=false

runs=()
for seed in ${SEEDS}; do
    for method in ${METHODS}; do
        case ${method} in
            grpo) method_args=(algorithm.adv_estimator=grpo trainer.v1.trainer_mode=sync) ;;  # verl's stock trainer
            # RLRT's own rule on the toy: no teacher without a complete sibling (the demo recipe falls back to the answer)
            rlrt) method_args=(algorithm.adv_estimator=rlrt trainer.v1.trainer_mode=rlrt_sync rlrt.sibling_fallback=none) ;;
            rlsd | opsd | grpo_eb) method_args=(algorithm.adv_estimator="${method}" trainer.v1.trainer_mode=rlrt_sync) ;;
            # the logit-level baselines: losses on verl's grpo estimator with the frozen θ₀ teacher (recipes/method/)
            sdpo | srpo) method_args=(algorithm.adv_estimator=grpo trainer.v1.trainer_mode=rlrt_sync
                                      actor_rollout_ref.actor.policy_loss.loss_mode="${method}" ++rlrt.teacher=frozen
                                      rlrt.sibling_fallback=none) ;;
            *) echo "unknown method ${method} (grpo, grpo_eb, rlsd, rlrt, opsd, sdpo, srpo)" >&2; exit 2 ;;
        esac
        only_this_method=ARGS_${method}
        read -r -a method_extra <<< "${!only_this_method:-}"
        run_dir=${OUT}/runs/${method}/seed${seed}
        rm -rf "${run_dir}"  # a stale launch file would be merged into this run's metrics
        mkdir -p "${run_dir}"
        VERL_FILE_LOGGER_PATH=${run_dir}/launch-$(date +%Y%m%d-%H%M%S).jsonl \
        "${PYTHON}" -m verl.trainer.main_ppo \
            --config-dir "${ROOT}/recipes" --config-name cpu_demo \
            +env=cpu \
            "${method_args[@]}" \
            reward.custom_reward_function.path=pkg://rlrt_recipe.reward \
            data.train_files="${DATA_DIR}/train.parquet" \
            data.val_files="${DATA_DIR}/heldout.parquet" \
            data.train_batch_size="${BATCH}" \
            data.seed="${seed}" \
            actor_rollout_ref.model.path="${MODEL_DIR}" \
            actor_rollout_ref.rollout.n="${N}" \
            actor_rollout_ref.rollout.seed="${seed}" \
            actor_rollout_ref.actor.optim.lr="${LR}" \
            actor_rollout_ref.actor.ppo_mini_batch_size=$((BATCH / 2)) \
            actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=$((BATCH * N / 2)) \
            trainer.total_training_steps="${STEPS}" \
            trainer.experiment_name="toy_${method}_seed${seed}" \
            trainer.default_local_dir="${run_dir}/checkpoints" \
            "$@" "${method_extra[@]}"
        runs+=(--run "${method}=${run_dir}")
    done
done

"${PYTHON}" "${ROOT}/scripts/toy_report.py" "${runs[@]}" --out "${OUT}/summary" --last "${LAST}"
