"""Top-K self-distillation on verl's engine: the teacher pass of the ``sdpo`` and ``srpo`` losses, and the live
divergence their loss reads (docs/methods.md, "SDPO and SRPO").

One teacher pass per step (docs/methods.md, "Top-K support: one teacher pass per step"):

1. **select** — inside verl's old-log-prob pass, the actor (θ_old) also returns its top-K token ids at every
   response position (a logits processor; ``RlrtActorRolloutRefWorker.compute_log_prob``), stored as ``TOPK_IDS``;
2. **gather** — the teacher (verl's reference model θ₀, or the actor) forwards the privileged rows (teacher prompt ‖
   the same response); a processor gathers its log-probs at those ids and its mass on them; verl's own entropy pass
   gives the teacher's full-vocabulary entropy H^T, its sampled-token pass τ (``compute_teacher_topk``);
3. **update** — the loss's processor computes the live student's log-probs at the stored ids and, per token, the
   divergence ``signals.topk_jsd`` (``live_divergence``).

verl calls a logits processor only through the function it holds as the loss (``distillation_use_topk`` in the
micro-batch; ``FSDPEngineWithLMHead.prepare_model_outputs``) and accepts only per-token scalars from it, so K ids or
values travel as K columns ``<prefix><j>``, which verl unpads and reorders like log-probs; ``stack_columns`` turns them
back into ``[tokens, K]``. Ulysses sequence parallelism is refused (the processor would see a slice of the tokens).

Pure functions of tensors; the worker methods that run 1–2 live in ``worker.py``, the TransferQueue I/O in the
trainer, the loss in ``loss.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import NonTensorStack, TensorDict
from verl.utils import tensordict_utils as tu

from rlrt_recipe import signals

#: Written by verl's old-log-prob pass for every row (response-shaped): θ_old's top-K ids per response token.
TOPK_IDS = "topk_ids"  # [R, K] int32
#: Written by the teacher pass for every row (response-shaped; rows without a demonstration hold one zero row of K in
#: the [R, K] field and zeros in the per-token ones).
TEACHER_TOPK_LOG_PROBS = "teacher_topk_log_probs"  # [R, K] bf16, the teacher's log-probs at θ_old's ids
TEACHER_ENTROPY = "teacher_entropy"  # [R] fp32, H^T over the full vocabulary
TEACHER_TOPK_MASS = "teacher_topk_mass"  # [R] fp32, Σ_k P_T(k) over the K ids
TEACHER_TOKEN_LOG_PROBS = "teacher_token_log_probs"  # [R] fp32, τ of the sampled token
TEACHER_PASS_OUTPUTS = (TEACHER_TOPK_LOG_PROBS, TEACHER_ENTROPY, TEACHER_TOPK_MASS, TEACHER_TOKEN_LOG_PROBS)
#: The driver writes these for every row before the teacher pass.
TEACHER_PROMPT_IDS = "teacher_prompt_ids"  # [P_t] int64; one pad id on rows without a demonstration
TEACHER_PASS_INPUTS = ("prompts", "responses", TEACHER_PROMPT_IDS, "has_teacher", TOPK_IDS)
#: ... and, for a multimodal model, each row's pixel inputs and (4, L) positions of the row the pass forwards: the
#: teacher row (teacher prompt ‖ response) where ``has_teacher``, else the minimal row ``MINIMAL_ROW`` ({} and its text
#: positions).
TEACHER_MULTI_MODAL_INPUTS = "teacher_multi_modal_inputs"
TEACHER_POSITION_IDS = "teacher_position_ids"  # [4, L_t] int64
TEACHER_PASS_VISION_INPUTS = (TEACHER_MULTI_MODAL_INPUTS, TEACHER_POSITION_IDS)
#: A row without a demonstration is forwarded as this prompt ‖ this response (every rank must run the same
#: micro-batches) and gets zero placeholders.
MINIMAL_ROW = (torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
#: Per-token weight of the divergence (SRPO's exp(−β·H^T), mean 1 over routed tokens; 1 for SDPO), written by the trainer.
TOPK_TOKEN_WEIGHTS = "topk_token_weights"


def placeholder_outputs(k: int, response_len: int) -> dict[str, torch.Tensor]:
    """``TEACHER_PASS_OUTPUTS`` of a row without a demonstration: one zero row of K in the [R, K] field, zeros over
    the student's response in the per-token ones."""
    return {
        TEACHER_TOPK_LOG_PROBS: torch.zeros(1, k, dtype=torch.bfloat16),
        **{name: torch.zeros(response_len, dtype=torch.float32)
           for name in (TEACHER_ENTROPY, TEACHER_TOPK_MASS, TEACHER_TOKEN_LOG_PROBS)},
    }


def outputs_batch(rows: Sequence[dict[str, torch.Tensor]]) -> TensorDict:
    """One TensorDict of the fields of per-row dicts (``TEACHER_PASS_OUTPUTS``), as stored in TransferQueue."""
    return TensorDict({name: nested_rows([row[name] for row in rows]) for name in rows[0]}, batch_size=[len(rows)])


def stored_topk_bytes(k: int, *, response_tokens: int, routed_tokens: int, placeholder_rows: int) -> int:
    """Bytes the top-K fields of a step occupy in TransferQueue: θ_old's K ids (int32) on every response token; on each
    token of a row with a demonstration K teacher values (bf16) and three float32 scalars; on every other row one
    K-row of bf16 zeros and the three scalars per token."""
    return (4 * k * response_tokens + (2 * k + 12) * routed_tokens
            + 2 * k * placeholder_rows + 12 * (response_tokens - routed_tokens))


ID_COLUMN = "rlrt_topk_id_"
VALUE_COLUMN = "rlrt_topk_lp_"
MASS_COLUMN = "rlrt_topk_mass"
GATHER_IDS = "rlrt_gather_ids"  # [L_t, K] per teacher row: the ids at the positions predicting response tokens
DIVERGENCE = "rlrt_topk_divergence"  # model output of the update's processor: the per-token divergence

# The logsumexp over the vocabulary runs on this many positions at a time (an fp32 copy of [chunk, V]).
_LOGSUMEXP_CHUNK = 4096


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """log Σ_v exp(z_v) per position  [N] of logits [N, V], in float32, a chunk of positions at a time."""
    return torch.cat([torch.logsumexp(chunk.float(), dim=-1) for chunk in logits.split(_LOGSUMEXP_CHUNK)])


def log_probs_at(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log softmax(z)[ids]  [N, K] for logits [N, V] and ids [N, K], in float32 (differentiable in the logits)."""
    return logits.gather(-1, ids.long()).float() - log_partition(logits).unsqueeze(-1)


def _zero_loss(model_output=None, data=None, dp_group=None):
    """verl's loss call after a forward-only pass with a processor: nothing is optimised."""
    return torch.zeros(()), {}


def select_processor(k: int):
    """Processor of the select pass: θ_old's top-K ids at every position, as K int64 columns."""

    def processor(student_logits=None, data=None, **loss_call):
        if student_logits is None:
            return _zero_loss(**loss_call)
        ids = torch.topk(student_logits[0], k, dim=-1).indices  # [nnz, K]
        return {f"{ID_COLUMN}{j}": ids[:, j].unsqueeze(0) for j in range(k)}

    return processor


def gather_processor(k: int):
    """Processor of the gather pass: the teacher's log-probs at the ids of ``GATHER_IDS`` (K float32 columns) and its
    mass on them. verl passes the forwarded model's logits as ``student_logits`` whatever the model."""

    def processor(student_logits=None, data=None, **loss_call):
        if student_logits is None:
            return _zero_loss(**loss_call)
        logits = student_logits[0]  # [nnz, V]
        ids = data[GATHER_IDS].values().to(logits.device)  # [nnz, K], aligned with the packed positions
        values = log_probs_at(logits, ids)  # [nnz, K]
        columns = {f"{VALUE_COLUMN}{j}": values[:, j].unsqueeze(0) for j in range(k)}
        columns[MASS_COLUMN] = values.exp().sum(-1).unsqueeze(0)
        return columns

    return processor


def stack_columns(output: TensorDict, prefix: str, k: int) -> torch.Tensor:
    """The K nested columns ``<prefix>0 … <prefix>K−1`` of an infer output as one jagged nested tensor [b, L, K]."""
    first = output[f"{prefix}0"]
    values = torch.stack([output[f"{prefix}{j}"].values() for j in range(k)], dim=-1)  # [nnz, K]
    return torch.nested.nested_tensor_from_jagged(values, first.offsets())


def response_windows(full: torch.Tensor, response_lens: Sequence[int]) -> list[torch.Tensor]:
    """Per row of a full-sequence nested output [b, L, ...], the positions that predict its R response tokens (the
    R positions before the last, as ``verl.workers.utils.padding.response_from_nested`` slices log-probs)."""
    values, ends = full.values(), full.offsets()[1:].tolist()
    return [values[end - r - 1:end - 1] for end, r in zip(ends, response_lens, strict=True)]


def balanced_order(tokens: Sequence[int], dp_size: int) -> list[int]:
    """A permutation of the rows for ``dp_size`` ranks that each take a contiguous, equal chunk: rows sorted by
    ``tokens`` (the teacher pass's work per row) and dealt round-robin, so every rank gets about the same work."""
    if len(tokens) % dp_size:
        raise ValueError(f"{len(tokens)} rows do not split evenly over {dp_size} data-parallel ranks")
    by_work = sorted(range(len(tokens)), key=lambda i: -tokens[i])
    return [i for rank in range(dp_size) for i in by_work[rank::dp_size]]


def rows_batch(prompts: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *, temperature: float,
               response_masks: Sequence[torch.Tensor] | None = None,
               position_ids: Sequence[torch.Tensor] | None = None,
               multi_modal_inputs: Sequence[dict[str, torch.Tensor]] | None = None, **meta) -> TensorDict:
    """An infer input in verl's NO_PADDING layout: rows ``prompt ‖ response``, the response mask (all ones unless
    ``response_masks`` is given) as ``response_mask`` and ``loss_mask``, and the non-tensor ``meta``
    (``temperature``, ``calculate_entropy``, …). The teacher step's ``build_teacher_batch`` builds on it too.

    Text positions ``0 … L−1`` unless ``position_ids`` gives each row's: [4, L] for a Qwen-VL model (text, then M-RoPE
    t/h/w; nested with the ragged dimension last, the layout the engine reads and verl's ``maybe_fix_3d_position_ids``
    keeps) or [L]. ``multi_modal_inputs`` (one dict per row, ``{}`` for a row without images) becomes the per-row
    NonTensorStack the engine concatenates (``verl.utils.model.extract_multi_modal_inputs``)."""
    prompts = [p.to(torch.int64) for p in prompts]
    responses = [r.to(torch.int64) for r in responses]
    masks = (list(response_masks) if response_masks is not None
             else [torch.ones(len(r), dtype=torch.int64) for r in responses])
    input_ids = [torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]
    positions = list(position_ids) if position_ids is not None else [torch.arange(len(x)) for x in input_ids]
    td = TensorDict(
        {
            "input_ids": tu.nested_tensor_from_tensor_list(input_ids),
            "position_ids": tu.nested_tensor_from_tensor_list(positions, ragged_idx=positions[0].dim()),
            "prompts": tu.nested_tensor_from_tensor_list(prompts),
            "responses": tu.nested_tensor_from_tensor_list(responses),
            "response_mask": tu.nested_tensor_from_tensor_list(masks),
            "loss_mask": tu.nested_tensor_from_tensor_list(masks),
        },
        batch_size=[len(input_ids)],
    )
    if multi_modal_inputs is not None:
        td["multi_modal_inputs"] = NonTensorStack(*multi_modal_inputs)
    tu.assign_non_tensor(td, temperature=temperature, **meta)
    return td


def teacher_pass_batch(data: TensorDict, k: int) -> tuple[TensorDict, list[int]]:
    """The gather forward's input over one rank's rows of the teacher pass (``TEACHER_PASS_INPUTS``, and
    ``TEACHER_PASS_VISION_INPUTS`` for a multimodal model; non-tensor ``temperature``, ``rlrt_no_lora_adapter``) and
    each forwarded row's response length: rows with ``has_teacher`` as teacher prompt ‖ response with θ_old's ids
    (``GATHER_IDS``), the others as ``MINIMAL_ROW`` with zero ids; entropy on (H^T)."""
    has_teacher = data["has_teacher"].bool().tolist()
    minimal_prompt, minimal_response = MINIMAL_ROW
    prompts = [p if h else minimal_prompt for p, h in zip(data[TEACHER_PROMPT_IDS].unbind(), has_teacher)]
    responses = [r if h else minimal_response for r, h in zip(data["responses"].unbind(), has_teacher)]
    ids = [stored if h else torch.zeros(len(minimal_response), k, dtype=torch.int32)
           for stored, h in zip(data[TOPK_IDS].unbind(), has_teacher)]
    vision = {}
    if TEACHER_POSITION_IDS in data.keys():
        positions = list(data[TEACHER_POSITION_IDS].unbind())
        for i, (p, r, pos) in enumerate(zip(prompts, responses, positions)):
            if pos.shape[-1] != len(p) + len(r):
                raise ValueError(f"teacher pass row {i}: {pos.shape[-1]} stored positions for a row of "
                                 f"{len(p) + len(r)} tokens; the driver wrote them for another row")
        vision = dict(position_ids=positions, multi_modal_inputs=list(data[TEACHER_MULTI_MODAL_INPUTS]))
    gather = rows_batch(prompts, responses, temperature=float(tu.get(data, "temperature")), calculate_entropy=True,
                        no_lora_adapter=bool(tu.get(data, "rlrt_no_lora_adapter", default=False)), **vision)
    gather[GATHER_IDS] = gather_ids([len(p) for p in prompts], ids)
    return gather, [len(r) for r in responses]


def gather_ids(prompt_lens: Sequence[int], response_ids: Sequence[torch.Tensor]) -> torch.Tensor:
    """``GATHER_IDS`` of teacher rows ``prompt (P) ‖ response (R)``: the R × K ids at positions P − 1 … P + R − 2 (those
    predicting the response tokens), zeros elsewhere; a jagged nested tensor [b, P + R, K]."""
    rows = []
    for p, ids in zip(prompt_lens, response_ids, strict=True):
        k = ids.shape[-1]
        rows.append(torch.cat([torch.zeros(p - 1, k, dtype=torch.int64), ids.to(torch.int64),
                               torch.zeros(1, k, dtype=torch.int64)]))
    return nested_rows(rows)


def nested_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """A jagged nested tensor [b, L, ...] ragged in each row's first dimension (verl's helper makes the last one
    ragged by default)."""
    return tu.nested_tensor_from_tensor_list(list(rows), ragged_idx=1)


def live_divergence(student_logits: torch.Tensor, data: TensorDict, alpha: float) -> torch.Tensor:
    """The update's processor: per packed position [nnz] (differentiable), ``topk_jsd`` of the live student's log-probs
    at the stored ids against the stored teacher log-probs, on the response positions of rows with ``has_teacher``;
    0 elsewhere. ``student_logits`` [nnz, V] are the temperature-scaled logits verl passes."""
    has_teacher = data["has_teacher"].bool().tolist()
    ends = data["input_ids"].offsets()[1:].tolist()
    response_lens = data["response_mask"].offsets().diff().tolist()
    ids, teacher = data[TOPK_IDS].unbind(), data[TEACHER_TOPK_LOG_PROBS].unbind()
    positions, row_ids, row_teacher = [], [], []
    for i, scored in enumerate(has_teacher):
        if not scored:
            continue
        r = response_lens[i]
        if ids[i].shape[0] != r or teacher[i].shape[0] != r:
            raise ValueError(
                f"row {i} of the micro-batch has {r} response tokens but top-K fields of {ids[i].shape[0]} and "
                f"{teacher[i].shape[0]} positions: the teacher pass and the update disagree"
            )
        positions.append(torch.arange(ends[i] - r - 1, ends[i] - 1))
        row_ids.append(ids[i])
        row_teacher.append(teacher[i])
    column = torch.zeros(student_logits.shape[0], dtype=torch.float32, device=student_logits.device)
    if not positions:
        return column
    index = torch.cat(positions).to(student_logits.device)  # [N]
    # Indexing copies the rows: verl's flash-attn cross-entropy may overwrite the logits in place in its backward
    # (inplace_backward), and nothing saved for this divergence's backward may alias them.
    student = log_probs_at(student_logits[index], torch.cat(row_ids).to(student_logits.device))  # [N, K]
    target = torch.cat(row_teacher).to(device=student_logits.device, dtype=torch.float32)  # [N, K]
    return column.index_put((index,), signals.topk_jsd(student, target, alpha))
