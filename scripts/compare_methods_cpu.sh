#!/usr/bin/env bash
# The CPU comparisons (docs/toy_comparison.md): the same warm-started 0.56 M-parameter model, data, steps and seeds for
# every method, each through verl's real `python -m verl.trainer.main_ppo` loop; then a table and figures. Two tasks:
#   TASK=toy (default)   single-digit sums, math-verify reward: each method's signal doing what its formula says
#                        (GRPO, GRPO+EB, RLSD, RLRT, OPSD, SDPO, SRPO; a table and a PNG of reward, response length,
#                        entropy and rlrt/* side by side)
#   TASK=explore         "reach the target" (examples/rlrt_explore: many distinct correct paths per problem,
#                        held-out problems): the papers' two claims, GRPO vs RLSD vs RLRT over 5 seeds × 50 steps;
#                        after the last step verl's validation samples every held-out problem N_EVAL times at
#                        temperature 1, and examples/rlrt_explore/report.py writes the training reward per step,
#                        held-out pass@k (k = 1 … N_EVAL, the unbiased estimator) and distinct correct paths per
#                        problem, each with a 95 % interval across seeds, and one figure per claim
#   bash scripts/compare_methods_cpu.sh                  # the toy, default size
#   TASK=explore bash scripts/compare_methods_cpu.sh     # the exploration experiment
#   bash scripts/compare_methods_cpu.sh --quick          # CI smoke of either task: 1 seed, 2 steps, tiny batch
#   SEEDS="1 2 3" bash scripts/compare_methods_cpu.sh    # toy: mean ± std over seeds (about 3x the time)
# Sizes: STEPS, BATCH (prompts per step), N (rollouts per prompt), SEEDS, LR, METHODS; explore also N_EVAL (samples
# per held-out problem), HELDOUT (held-out problems, read when the data is built) and LAMBDA_DECAY (RLSD's K).
# Extra arguments after --quick (or alone) are Hydra overrides for every launch; ARGS_<method> (e.g.
# ARGS_rlsd="trainer.total_training_steps=3") holds overrides for that method's launches only (explore already
# sets rlrt.lambda_decay_steps for rlsd: override it with LAMBDA_DECAY or ++, not +). Launches run one at a time;
# bash ≥ 4.4 (empty arrays under set -u).
set -xeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then
    QUICK=1
    shift
fi
quick_or() { [[ ${QUICK} == 1 ]] && echo "$1" || echo "$2"; }  # quick_or QUICK_VALUE FULL_VALUE
# The venv scripts/install.sh makes, if present; any python with rlrt-recipe installed otherwise.
if [[ -x "${ROOT}/.venv/bin/python" ]]; then PYTHON=${PYTHON:-${ROOT}/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
TASK=${TASK:-toy}
STEPS=${STEPS:-$(quick_or 2 "$([[ ${TASK} == explore ]] && echo 50 || echo 12)")}  # training steps (ours)
BATCH=${BATCH:-$(quick_or 2 4)}  # prompts per step (ours)
LAST=${LAST:-3}  # toy: final value = mean over the last LAST steps
case ${TASK} in
    toy)
        OUT=${OUT:-${ROOT}/artifacts/toy_comparison$(quick_or _quick "")}
        METHODS=${METHODS:-"grpo rlsd rlrt opsd"}  # ours: three of RLSD's Table 2 methods (GRPO, OPSD, RLSD) and RLRT
        SEEDS=${SEEDS:-1}  # ours
        N=${N:-$(quick_or 4 8)}  # rollouts per prompt (ours; the papers' 8)
        LR=${LR:-1e-3}  # one lr for every method (ours: a tiny model moves nowhere at the recipes' 1e-6)
        WARM_STEPS=${WARM_STEPS:-$(quick_or 150 400)}  # ours
        task_args=(reward.custom_reward_function.path=pkg://rlrt_recipe.reward)
        rlsd_args=()  # the recipe's λ decay
        ;;
    explore)
        OUT=${OUT:-${ROOT}/artifacts/explore$(quick_or _quick "")}
        METHODS=${METHODS:-"grpo rlsd rlrt"}  # the two claims' methods and their baseline (RLRT Fig. 8, RLSD Fig. 1)
        SEEDS=${SEEDS:-$(quick_or 1 "1 2 3 4 5")}  # ours (the issue: ≥ 5)
        N=${N:-8}  # rollouts per prompt (the papers' 8; quick too: groups of 4 at a 15 % pass rate seldom have 2 correct)
        LR=${LR:-1e-4}  # one lr for every method (ours: at 1e-3 GRPO lost the answer format within 5 steps)
        N_EVAL=${N_EVAL:-$(quick_or 8 64)}  # samples per held-out problem: pass@k up to k = N_EVAL (ours)
        HELDOUT=${HELDOUT:-$(quick_or 4 24)}  # held-out problems evaluated (ours)
        # RLSD's λ decays over K steps (RLSD Sec. 5.1: 50 of 200); ours: the same quarter of this run's steps
        LAMBDA_DECAY=${LAMBDA_DECAY:-$(( STEPS / 4 > 1 ? STEPS / 4 : 1 ))}
        task_args=(reward.custom_reward_function.path="${ROOT}/examples/rlrt_explore/reward.py"
                   reward.custom_reward_function.name=compute_score
                   # ours (examples/rlrt_explore/task.py): 24 response tokens fit 28 % of the held-out correct paths
                   # (the shortest of every problem; the longest needs 29): the experiment's setting as run
                   data.max_prompt_length=64 data.max_response_length=24
                   # after the last step (or every STEPS steps): every held-out problem N_EVAL times at T = 1
                   actor_rollout_ref.rollout.val_kwargs.n="${N_EVAL}"
                   actor_rollout_ref.rollout.val_kwargs.do_sample=true
                   actor_rollout_ref.rollout.val_kwargs.temperature=1.0
                   trainer.val_before_train=false trainer.test_freq="${STEPS}" trainer.save_freq=-1)
        rlsd_args=(++rlrt.lambda_decay_steps="${LAMBDA_DECAY}")
        ;;
    *) echo "unknown TASK ${TASK} (toy, explore)" >&2; exit 2 ;;
esac
MODEL_DIR=${MODEL_DIR:-${OUT}/model}
DATA_DIR=${DATA_DIR:-${OUT}/data}

if [[ ! -f "${MODEL_DIR}/warm_start.txt" || ! -f "${DATA_DIR}/train.parquet" || ! -f "${DATA_DIR}/heldout.parquet" ]]; then
    # QUICK's short warm start may miss its checks; the runs only need a working model.
    if [[ ${TASK} == toy ]]; then
        "${PYTHON}" "${ROOT}/scripts/warm_start.py" --out "${MODEL_DIR}" --data-dir "${DATA_DIR}" \
            --steps "${WARM_STEPS}" || [[ ${QUICK} == 1 ]]
    else
        PYTHONPATH="${ROOT}/examples${PYTHONPATH:+:${PYTHONPATH}}" "${PYTHON}" -m rlrt_explore --out "${MODEL_DIR}" \
            --data-dir "${DATA_DIR}" --heldout-problems "${HELDOUT}" $(quick_or "--steps 60" "") || [[ ${QUICK} == 1 ]]
    fi
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
            # RLRT's own rule: no teacher without a complete correct sibling (the demo recipe falls back to the answer)
            rlrt) method_args=(algorithm.adv_estimator=rlrt trainer.v1.trainer_mode=rlrt_sync rlrt.sibling_fallback=none) ;;
            rlsd) method_args=(algorithm.adv_estimator=rlsd trainer.v1.trainer_mode=rlrt_sync "${rlsd_args[@]}") ;;
            opsd | grpo_eb) method_args=(algorithm.adv_estimator="${method}" trainer.v1.trainer_mode=rlrt_sync) ;;
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
            "${task_args[@]}" \
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
            trainer.experiment_name="${TASK}_${method}_seed${seed}" \
            trainer.validation_data_dir="${run_dir}/val" \
            trainer.default_local_dir="${run_dir}/checkpoints" \
            "$@" "${method_extra[@]}"
        runs+=(--run "${method}=${run_dir}")
    done
done

if [[ ${TASK} == toy ]]; then
    "${PYTHON}" "${ROOT}/scripts/toy_report.py" "${runs[@]}" --out "${OUT}/summary" --last "${LAST}"
else
    "${PYTHON}" "${ROOT}/examples/rlrt_explore/report.py" "${runs[@]}" --out "${OUT}/summary"
fi
