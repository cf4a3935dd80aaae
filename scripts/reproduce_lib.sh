# Sourced by reproduce_rlrt_table.sh and reproduce_rlsd_table.sh: the launches of one paper's comparison, run or,
# under --dry-run, printed (and each training config composed with main_ppo --cfg job when COMPOSE=1).
# Reads ROOT, PYTHON, OUTPUT_DIR, DRY_RUN, DRY_RUN_DIR, COMPOSE, BASE_ROW; fills table_runs and curve_runs.

table_runs=()  # --run NAME=DIR of each evaluation, for the table (or the pass@k plot)
curve_runs=()  # --run NAME=DIR of each training, for the curves

parquet_list() {  # parquet_list DIR NAME...: DIR/NAME.parquet for each NAME, comma-separated
    local dir=$1 files="" name
    shift
    for name in "$@"; do
        files+="${files:+,}${dir}/${name}.parquet"
    done
    echo "${files}"
}

evaluate() {  # evaluate NAME CKPT [overrides...]: the evaluation launch of one run (printed under --dry-run)
    local name=$1 ckpt=$2
    shift 2
    local command=(env METHOD="${name}" CKPT="${ckpt}" EVAL_DIR="${OUTPUT_DIR}/${name}/eval"
                   bash "${ROOT}/scripts/evaluate.sh")
    if [[ "${DRY_RUN}" == 1 ]]; then
        "${command[@]}" --dry-run "$@" > "${DRY_RUN_DIR}/${name}.eval.txt"
        echo "evaluate ${name}: $(head -n 1 "${DRY_RUN_DIR}/${name}.eval.txt")"
    else
        "${command[@]}" "$@"
    fi
}

evaluate_base_model() {  # evaluate_base_model [overrides...]: the untrained backbone's row, when BASE_ROW=1
    if [[ "${BASE_ROW}" == 1 ]]; then
        evaluate base_model base "$@"
        table_runs+=(--run "base_model=${OUTPUT_DIR}/base_model/eval")
    fi
}

train() {  # train NAME COMMAND...: one training launch, its metrics JSONL in OUTPUT_DIR/NAME/train
    local name=$1 run_dir=${OUTPUT_DIR}/$1
    shift
    if [[ "${DRY_RUN}" == 1 ]]; then
        echo "train ${name}: VERL_FILE_LOGGER_PATH=${run_dir}/train/launch-<time>.jsonl $(printf '%q ' "$@")"
        if [[ "${COMPOSE}" == 1 ]]; then
            "$@" --cfg job > "${DRY_RUN_DIR}/${name}.train.yaml"
        fi
    else
        mkdir -p "${run_dir}/train"
        # One file per launch: verl's file logger truncates its file
        VERL_FILE_LOGGER_PATH=${run_dir}/train/launch-$(date +%Y%m%d-%H%M%S).jsonl "$@"
    fi
    curve_runs+=(--run "${name}=${run_dir}/train")
}

summarise() {  # summarise LABEL COMMAND...: the table (or plot) COMMAND and the training curves, printed under --dry-run
    local label=$1
    shift
    local curves=("${PYTHON}" "${ROOT}/scripts/plot_curves.py" "${curve_runs[@]}" --out "${OUTPUT_DIR}/curves.png")
    if [[ "${DRY_RUN}" == 1 ]]; then
        echo "${label}: $(printf '%q ' "$@")"
        echo "curves: $(printf '%q ' "${curves[@]}")"
        echo "composed configs: ${DRY_RUN_DIR}"
        return
    fi
    "$@"
    "${curves[@]}"
}
