"""The reference-with-privilege step: teacher log-probs τ for a step's rollouts, from the actor's own shards.

Once per training step, after verl's old log-probs s:
1. re-render every real row's student prompt with verl's continuous-token builder and check it equals the
   stored ``prompts`` (verl silently left-truncates over-long prompts; a mismatch would misalign τ);
2. choose the rows whose advantage depends on τ and build their teacher messages (``privileged.py``);
3. tokenise them with the same builder (same chat template, generation prefix and thinking tags; with
   ``rlrt.teacher_chat_template_kwargs`` the teacher's kwargs and then the student's generation-prompt tail,
   ``privileged.generation_prompt_tail``), append the student's response ids unchanged, pad the batch to the
   data-parallel multiple with minimal rows;
   for a multimodal model (Qwen-VL) the builder renders through the processor with the row's images as the rollout
   got them (the dataset class's ``process_multi_modal_info``; the teacher keeps the student's image blocks, so it
   sees the same images), and each row carries its ``multi_modal_inputs`` and (4, L) position ids from verl's own
   agent-loop helpers;
4. score them in one ``compute_log_prob`` call on the actor worker group (the current FSDP shards, no
   second copy of the weights) and slice the response window from the end of each row, so τ_t aligns token
   for token with s_t;
5. return ``teacher_log_probs`` for **every** row (s where unscored, so Δ = 0), ``has_teacher`` and
   ``correct``, plus the step's ``rlrt/*`` metrics about the teacher.

Each part is a function of its inputs (row reading, checks, row selection, decoding, batch building, metrics);
``TeacherStep.run`` calls them in order, makes the one call to the worker group and times each part
(``timing_s/teacher/<part>``). No formula lives here; the verl-facing I/O (TransferQueue) stays in the trainer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jinja2 import TemplateError
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.profiler.performance import simple_timer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.workers.utils.padding import response_from_nested

from rlrt_recipe import privileged, signals
from rlrt_recipe.config import WEIGHTED_ESTIMATORS, RlrtConfig
from rlrt_recipe.integration import topk
from rlrt_recipe.integration.images import (
    ConversationImages,
    FetchImages,
    VisionInputs,
    without_image_data,
    is_multimodal,
    render_key,
)
from rlrt_recipe.integration.estimators import grpo_row_advantages
from rlrt_recipe.signals import nonfinite_rows, scored_log_prob_means

logger = logging.getLogger("rlrt_recipe")

#: Fields the teacher step reads from the stored batch.
INPUT_FIELDS = (
    "prompts", "responses", "response_mask", "old_log_probs", "rm_scores",
    "raw_prompt", "reward_model", "extra_info", "data_source", "uid",
)
#: Fields it writes for every row.
OUTPUT_FIELDS = ("teacher_log_probs", "has_teacher", "correct")
#: And with ``rlrt.confidence_min``: the teacher's entropy H_T per response token (0 on rows it does not score).
TEACHER_ENTROPY_FIELD = topk.TEACHER_ENTROPY
#: Rollouts the ``rlrt/leak_cue_rate`` probe decodes per step at most (``leak_probe_rows``).
LEAK_PROBE_ROWS = 64

ComputeLogProb = Callable[[TensorDict], TensorDict]
#: Scores the teacher rows another way than one ``compute_log_prob`` call (the top-K teacher pass): given the scored
#: row indices, their teacher prompt ids and, for a multimodal model, each teacher row's ``multi_modal_inputs`` and (4, L)
#: position ids (``VisionInputs``; else None), returns τ over each row's response and the number of rows sent.
VisionRow = tuple[dict[str, torch.Tensor], torch.Tensor]
ScoreRows = Callable[[Sequence[int], Sequence[list[int]], Sequence[VisionRow] | None], tuple[list[torch.Tensor], int]]


@dataclass
class TeacherBatchLayout:
    """How teacher rows are batched for ``compute_log_prob``.

    ``dp_size`` ranks each take a contiguous, equal chunk; without dynamic batch size each chunk must also
    split into ``micro_batch_size_per_gpu`` rows; with it, the call carries its own token budget (at least
    its longest row), leaving the student and training budgets untouched.
    """

    dp_size: int
    micro_batch_size_per_gpu: int | None
    max_token_len_per_gpu: int | None  # set iff use_dynamic_bsz
    temperature: float
    no_lora_adapter: bool = False

    def multiple(self) -> int:
        return self.dp_size * (1 if self.max_token_len_per_gpu else (self.micro_batch_size_per_gpu or 1))


class PromptRenderer:
    """Prompt ids of chat messages with the generation prefix, as verl's agent loop renders them (verl's
    continuous-token builder: the model's chat template, ``data.apply_chat_template_kwargs`` — for the teacher's
    renderer ``rlrt.teacher_chat_template_kwargs`` —, thinking tags). For a multimodal model the builder renders
    through the ``processor`` with ``mm_processor_kwargs`` (``data.mm_processor_kwargs``) and the messages' images
    from ``images`` (the rollout's, ``ConversationImages``), each image placeholder expanded to its image tokens.

    Renders (and generation prompts) are cached until ``clear()``, keyed by ``render_key`` (image content hashed):
    within a step the budget check and the teacher batch render the same messages, and the rollouts of one prompt
    share its generation prompt.
    """

    def __init__(self, tokenizer: Any, *, hf_model_type: str | None, chat_template_kwargs: dict[str, Any],
                 processor: Any = None, mm_processor_kwargs: dict[str, Any] | None = None,
                 images: ConversationImages | None = None):
        if is_multimodal(processor) and images is None:
            raise ValueError("a multimodal model's prompts are rendered with their images: pass `images` (the "
                             "rollout's, ConversationImages(dataset_images(...)))")
        self.builder = create_continuous_token_builder(
            tokenizer, hf_model_type=hf_model_type, chat_template_kwargs=chat_template_kwargs, processor=processor,
            mm_processor_kwargs=mm_processor_kwargs,
        )
        self.images = images
        self._cache: dict[str, list[int]] = {}
        self._generation_prompts: dict[str, list[int]] = {}

    def __call__(self, messages: privileged.Messages) -> list[int]:
        key = render_key(messages)
        if key not in self._cache:
            if self.images is None:
                self._cache[key] = list(self.builder.build_initial_tokens(list(messages)))
            else:
                self._cache[key] = list(self.builder.build_initial_tokens(list(messages), images=self.images(messages)))
        return self._cache[key]

    def count_tokens(self, messages: privileged.Messages) -> int:
        return len(self(messages))

    def prefetch_images(self, conversations: Sequence[privileged.Messages]) -> None:
        """Fetch the images of many conversations at once (one batch through the dataset class) before rendering."""
        if self.images is not None:
            self.images.prefetch(conversations)

    def generation_prompt(self, messages: privileged.Messages, *, where: str) -> list[int]:
        """G(M) of ``messages`` (``generation_prompt``)."""
        key = render_key(messages)
        if key not in self._generation_prompts:
            self._generation_prompts[key] = generation_prompt(self.builder, messages, where=where)
        return self._generation_prompts[key]

    def clear(self) -> None:
        self._cache.clear()
        self._generation_prompts.clear()
        if self.images is not None:
            self.images.clear()


def chat_template_kwargs(data_config: Any) -> dict[str, Any]:
    """``data.apply_chat_template_kwargs`` as a plain dict ({} when unset): what the agent loop renders with."""
    return _plain_dict(data_config.get("apply_chat_template_kwargs", None))


def mm_processor_kwargs(data_config: Any) -> dict[str, Any]:
    """``data.mm_processor_kwargs`` as a plain dict ({} when unset): what the agent loop's processor calls get."""
    return _plain_dict(data_config.get("mm_processor_kwargs", None))


def _plain_dict(kwargs: Any) -> dict[str, Any]:
    return OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else {}


def resolved_teacher_kwargs(student: Mapping[str, Any], teacher: Mapping[str, Any] | None) -> dict[str, Any]:
    """The kwargs the teacher prompt is rendered with: ``rlrt.teacher_chat_template_kwargs`` (``teacher``), or the
    student's ``data.apply_chat_template_kwargs`` when it is null."""
    return dict(student if teacher is None else teacher)


def generation_prompt(builder: Any, messages: privileged.Messages, *, where: str) -> list[int]:
    """G(M): the tokens ``add_generation_prompt=True`` adds to the render of ``messages`` without it, with the
    builder's chat template and kwargs (verl's suffix diff, ``render_delta_token_id``, the way the builder renders
    appended turns). A render without the generation prompt that is not a token prefix of the render with it, or a
    template that cannot render without one, is refused naming ``rlrt.teacher_chat_template_kwargs`` (which is
    what needs G) and ``where``. Image blocks are rendered without their images (a VL builder would run the processor
    on them twice): both renders get the same placeholders, so the suffix G is the same tokens."""
    try:
        return list(builder.render_delta_token_id(without_image_data(messages), [], add_generation_prompt=True))
    except (ValueError, TemplateError) as err:
        raise ValueError(
            f"{where}: cannot take the generation prompt of the chat template with kwargs "
            f"{builder.chat_template_kwargs} ({err}); {privileged.TEACHER_KWARGS_KEY} needs it to append the "
            f"student's generation-prompt tail to the teacher prompt. Set {privileged.TEACHER_KWARGS_KEY}=null "
            "(the student's kwargs)"
        ) from err


# ---------------------------------------------------------------------------------------------- pure pieces


def row_infos(data: TensorDict, n: int) -> list[privileged.RowInfo]:
    """One ``RowInfo`` per stored row. Each column is read once: indexing a non-tensor column of a TensorDict
    rebuilds the whole column, so reading it per row is quadratic (120 one-core s at 2048 rows, bench_driver.py)."""
    columns = {key: data[key] for key in ("raw_prompt", "reward_model", "extra_info", "data_source", "uid")}
    return [
        privileged.RowInfo.from_fields(
            i, raw_prompt=columns["raw_prompt"][i], reward_model=columns["reward_model"][i],
            extra_info=columns["extra_info"][i], data_source=columns["data_source"][i], uid=columns["uid"][i],
        )
        for i in range(n)
    ]


def check_student_prompts(rows: Sequence[privileged.RowInfo], prompts: Sequence[torch.Tensor], real: torch.Tensor,
                          render: PromptRenderer, prompt_length: int) -> None:
    """Re-render each real row's student messages (with the rollout's images: every image placeholder expanded to its
    image tokens); they must equal the stored prompt ids token for token. A row with a content block the teacher
    cannot serve (video, audio) is refused first (``privileged.check_blocks``)."""
    real_rows = [row for row in rows if real[row.index]]
    for row in real_rows:
        privileged.check_blocks(row)
    render.prefetch_images([list(row.messages) for row in real_rows])
    for row in real_rows:
        stored = prompts[row.index]
        rendered = render(list(row.messages))
        if len(rendered) > prompt_length:
            raise ValueError(
                f"{row.where()}: the student prompt is {len(rendered)} tokens, over rollout.prompt_length="
                f"{prompt_length} (data.max_prompt_length), and verl left-truncated it; the teacher would "
                "see a different question. Set data.filter_overlong_prompts=True or raise data.max_prompt_length"
            )
        if rendered != stored.tolist():
            images = (" with its images (the data.custom_cls dataset class's process_multi_modal_info, "
                      "data.mm_processor_kwargs)" if privileged.has_images(row.messages) else "")
            raise ValueError(
                f"{row.where()}: re-rendering raw_prompt{images} gives {len(rendered)} tokens that differ from the "
                f"{len(stored)} stored prompt tokens; the teacher prompt would not match the student's. Check "
                "data.apply_chat_template_kwargs and the model's chat template; the teacher step serves only "
                "actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent with "
                "actor_rollout_ref.rollout.multi_turn.enable=false and no agent_name column naming another loop"
            )


def select_rows(rm_scores: torch.Tensor, response_mask: torch.Tensor, uids: Sequence[str], real: torch.Tensor,
                correct: torch.Tensor, step: int, *, cfg: RlrtConfig, adv_estimator: str, algorithm_config: Any = None,
                use_kl_in_reward: bool = False, loss_mode: str = "vanilla") -> torch.Tensor:
    """Rows whose Â or loss depends on the teacher  [B]: real rows with response tokens, and for rlrt/rlsd passing
    the gate with A ≠ 0 (with KL in the reward A is unknown here, so A ≠ 0 is assumed) — none once λ_k = 0 and no
    distillation loss reads τ (Â = A then); for the srpo loss the wrong rows only (SRPO routes only wrong rollouts
    to the teacher); every such row under ``rlrt.score_all_rows``."""
    candidates = real & (response_mask.sum(-1) > 0)  # [B]
    if loss_mode == "srpo" and not cfg.score_all_rows:
        return candidates & ~correct
    if cfg.score_all_rows or adv_estimator not in WEIGHTED_ESTIMATORS:
        return candidates
    additive = bool(cfg.additive) and cfg.distill_adv_coef != 0.0
    if cfg.lambda_at(step) == 0.0 and cfg.distill_loss_coef == 0.0 and not additive:
        return torch.zeros_like(candidates)
    if use_kl_in_reward:  # A is not known here: every row that could pass the gate
        adv_sign = -torch.ones(len(uids)) if cfg.gate == "negative" else None
        return candidates & signals.selected_rows(cfg.gate, correct=correct, has_teacher=torch.ones_like(correct),
                                                  adv_sign=adv_sign, group=list(uids))
    adv = grpo_row_advantages(rm_scores, np.array(uids, dtype=object), algorithm_config)[:, 0]  # [B], as the estimator
    gate = signals.selected_rows(cfg.gate, correct=correct, has_teacher=torch.ones_like(correct), adv_sign=adv.sign(),
                                 group=list(uids))  # [B], the estimator's S_row
    return candidates & gate & (adv != 0)


def finished_rows(responses: Sequence[torch.Tensor], eos_token_ids: Collection[int]) -> torch.Tensor:
    """Rows whose response ended with an EOS token  [B] (not cut at the length limit, not empty)."""
    return torch.tensor([len(r) > 0 and int(r[-1]) in eos_token_ids for r in responses], dtype=torch.bool)


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """The ids that end a rollout: the tokenizer's EOS and the generation config's (vLLM stops at either)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(generation_config, "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple, set)) else [] if extra is None else [extra])
    return ids


def sibling_rows(uids: Sequence[str], candidates: torch.Tensor, scored: torch.Tensor, context: str) -> list[int]:
    """Rows whose text can become a sibling context: under the rollout context, each candidate row (correct and
    finished) of a uid group that has a scored row other than itself (``teacher_contexts`` draws a scored row's
    sibling from the candidates of its own group only); no row under the answer and solution contexts."""
    if context != "rollout":
        return []
    scored_in_group: dict[str, int] = {}
    for uid, is_scored in zip(uids, scored.tolist()):
        scored_in_group[uid] = scored_in_group.get(uid, 0) + is_scored
    return [i for i, (uid, is_candidate, is_scored) in enumerate(zip(uids, candidates.tolist(), scored.tolist()))
            if is_candidate and scored_in_group[uid] > is_scored]


def leak_probe_rows(real: torch.Tensor, step: int) -> list[int]:
    """The rollouts the ``rlrt/leak_cue_rate`` probe reads: every real row when there are at most
    ``LEAK_PROBE_ROWS``, else that many drawn uniformly with ``random.Random(step)`` (the same rows for a given
    step and batch, others at the next step), so the probe decodes a bounded number of responses per step."""
    real_rows = real.nonzero().flatten().tolist()
    if len(real_rows) <= LEAK_PROBE_ROWS:
        return real_rows
    return sorted(random.Random(step).sample(real_rows, LEAK_PROBE_ROWS))


def decode(tokenizer: Any, responses: Sequence[torch.Tensor], wanted: Sequence[int]) -> list[str]:
    """The text of the responses in ``wanted``, special tokens skipped (so up to and excluding EOS); "" for every
    other row. Only the rows of ``sibling_rows`` and ``leak_probe_rows`` need text (decoding all 2048 × 16 k
    tokens of a paper-scale step took 12 one-core seconds, docs/performance.md); ``teacher_contexts`` also
    reads the "" of a correct row that no scored row can draw, and takes it for no text."""
    wanted = sorted(set(wanted))
    texts = [""] * len(responses)
    decoded = tokenizer.batch_decode([responses[i].tolist() for i in wanted], skip_special_tokens=True)
    for i, text in zip(wanted, decoded):
        texts[i] = text
    return texts


def generation_prompt_tails(rows: Sequence[privileged.RowInfo], prompts: Sequence[torch.Tensor], wanted: torch.Tensor,
                            render: PromptRenderer, render_teacher: PromptRenderer,
                            decode: Callable[[Sequence[int]], str]) -> list[list[int]]:
    """Per row, the student's generation-prompt tail its teacher prompt gets (``privileged.generation_prompt_tail``
    of G_S and G_T, both on the row's student messages): [] for rows not ``wanted``, and for every row when the
    teacher renders with the student's renderer (equal kwargs: no extra render, teacher prompts as before). The
    stored student prompt must end with G_S (the tail is what the response follows)."""
    if render_teacher is render:
        return [[] for _ in rows]
    tails: list[list[int]] = []
    for row, prompt, is_wanted in zip(rows, prompts, wanted.tolist()):
        if not is_wanted:
            tails.append([])
            continue
        student = render.generation_prompt(list(row.messages), where=row.where())
        _check_ends_with(prompt.tolist(), student, "student", row, decode)
        teacher = render_teacher.generation_prompt(list(row.messages), where=row.where())
        tails.append(privileged.generation_prompt_tail(student, teacher, where=row.where(), decode=decode))
    return tails


def teacher_prompt_ids(messages: privileged.Messages, row: privileged.RowInfo, tail: list[int],
                       render: PromptRenderer, render_teacher: PromptRenderer,
                       decode: Callable[[Sequence[int]], str]) -> list[int]:
    """The teacher prompt of ``row``: its teacher ``messages`` rendered with the teacher's kwargs, then ``tail``
    (``generation_prompt_tails``). The render must end with G_T of the row's student messages, the generation
    prompt the tail extends; with equal kwargs it is the render alone."""
    ids = render_teacher(messages)
    if render_teacher is render:
        return ids
    _check_ends_with(ids, render_teacher.generation_prompt(list(row.messages), where=row.where()), "teacher", row,
                     decode)
    return ids + tail


def _check_ends_with(ids: list[int], suffix: list[int], whose: str, row: privileged.RowInfo,
                     decode: Callable[[Sequence[int]], str]) -> None:
    if ids[len(ids) - len(suffix):] != suffix:
        raise ValueError(
            f"{row.where()}: the {whose} prompt ends with {decode(ids[-len(suffix) - 8:])!r}, not with the generation "
            f"prompt {decode(suffix)!r} of the {whose}'s chat-template kwargs, so {privileged.TEACHER_KWARGS_KEY} "
            f"cannot align the teacher prompt with the student's. Set {privileged.TEACHER_KWARGS_KEY}=null (the "
            "student's kwargs)"
        )


def build_teacher_batch(prompt_ids: Sequence[list[int]], response_ids: Sequence[torch.Tensor],
                        layout: TeacherBatchLayout, pad_id: int, *, calculate_entropy: bool = False,
                        vision: VisionInputs | None = None, images: Sequence[list[Any] | None] | None = None
                        ) -> TensorDict:
    """The ``compute_log_prob`` input (verl's NO_PADDING layout, ``topk.rows_batch``): rows ``prompt ‖ response``,
    the response mask over the response, then minimal mask-0 rows up to ``layout.multiple()`` for the data-parallel
    split; with ``calculate_entropy`` verl's forward also returns each position's entropy (``entropy``). For a
    multimodal model (``vision``) every row, the padding rows too, also carries ``multi_modal_inputs`` (of its
    ``images``, none for the padding rows) and the processor's position ids, as the student's rows are stored."""
    prompts = [torch.tensor(p, dtype=torch.int64) for p in prompt_ids]
    responses = list(response_ids)
    masks = [torch.ones(len(r), dtype=torch.int64) for r in responses]
    n_pad = -len(prompts) % layout.multiple()
    pad = torch.tensor([pad_id], dtype=torch.int64)
    prompts += [pad] * n_pad  # minimal rows for the data-parallel split; never read back
    responses += [pad] * n_pad
    masks += [torch.zeros(1, dtype=torch.int64)] * n_pad
    meta: dict[str, Any] = dict(compute_loss=False, calculate_entropy=calculate_entropy)
    if layout.max_token_len_per_gpu:
        longest = max(len(p) + len(r) for p, r in zip(prompts, responses))
        meta["max_token_len_per_gpu"] = max(layout.max_token_len_per_gpu, longest)
    if layout.no_lora_adapter:
        meta["no_lora_adapter"] = True
    if vision is not None:
        row_images = list(images if images is not None else [None] * len(prompt_ids)) + [None] * n_pad
        inputs, positions = zip(*(vision(torch.cat([p, r.to(torch.int64)]), row)
                                  for p, r, row in zip(prompts, responses, row_images, strict=True)))
        meta.update(multi_modal_inputs=list(inputs), position_ids=list(positions))
    return topk.rows_batch(prompts, responses, temperature=layout.temperature, response_masks=masks, **meta)


def response_log_probs(output: TensorDict, batch: TensorDict, n_rows: int, key: str = "log_probs") -> list[torch.Tensor]:
    """τ (or the ``key`` output, e.g. ``entropy``) over each of the first ``n_rows`` responses of ``batch``, sliced
    from the end of each row of the engine's full-sequence output (so τ_t aligns with s_t whatever the prompt
    lengths)."""
    return list(response_from_nested(output[key], batch["response_mask"]).unbind()[:n_rows])


def check_finite(teacher: Sequence[torch.Tensor], old: Sequence[torch.Tensor], response_mask: torch.Tensor,
                 rows: Sequence[privileged.RowInfo], has_teacher: torch.Tensor) -> None:
    """NaN/inf in τ or s on a response token of a scored row is an error naming the row."""
    for name, values in (("teacher log-prob τ", teacher), ("old log-prob s", old)):
        padded = tu.nested_tensor_from_tensor_list(values).to_padded_tensor(0.0)  # [B, T]
        bad = [i for i in nonfinite_rows(padded, response_mask) if has_teacher[i]]
        if bad:
            raise ValueError(
                f"non-finite {name} on response tokens of {rows[bad[0]].where()}"
                + (f" and {len(bad) - 1} more rows" if len(bad) > 1 else "")
                + "; check the model's numerics (fp32 mixed precision on CPU) and rollout.temperature"
            )


def teacher_metrics(*, uids: Sequence[str], real: torch.Tensor, correct: torch.Tensor, scores: torch.Tensor,
                    gate: str | None, contexts: Sequence[privileged.TeacherContext], teacher_rows: Sequence[int],
                    prompt_lens: Sequence[int], teacher_prompt_lens: Sequence[int], response_mask: torch.Tensor,
                    probe_texts: Sequence[str], cue: str) -> dict[str, float]:
    """The teacher-side ``rlrt/*`` metrics of the step, over real rows only. ``rlrt/leak_cue_rate`` is over
    ``probe_texts``, the decoded ``leak_probe_rows`` (0.0 when the step has no real row)."""
    n_real = int(real.sum())
    # rows passing the gate; "negative" (A < 0) counted as the incorrect rows, which it is for binary rewards
    passed = {"correct": correct, "negative": ~correct,
              "mixed": signals.selected_rows("mixed", correct=correct, has_teacher=real, group=list(uids)),
              }.get(gate, real)  # [B]
    groups: dict[str, list[float]] = {}
    for uid, score, is_real in zip(uids, scores.tolist(), real.tolist()):
        if is_real:
            groups.setdefault(uid, []).append(score)
    degenerate = sum(len(g) >= 2 and len(set(g)) == 1 for g in groups.values())
    response_lens = response_mask.sum(-1).tolist()  # [B]
    student_lens = [prompt_lens[i] + int(response_lens[i]) for i in range(len(uids)) if real[i]]
    teacher_lens = [n + int(response_lens[i]) for n, i in zip(teacher_prompt_lens, teacher_rows)]
    student_tokens, teacher_tokens = sum(student_lens), sum(teacher_lens)
    metrics = {
        "rlrt/gate_pass_frac": float((passed & real).sum()) / max(n_real, 1),
        "rlrt/degenerate_group_frac": degenerate / max(len(groups), 1),
        "rlrt/scored_row_frac": len(teacher_rows) / max(n_real, 1),
        "rlrt/teacher_token_ratio": teacher_tokens / max(student_tokens, 1),
        # sizes of the two forwards (real rows only), for FLOP estimates: Σ L for the dense part, Σ L² for attention
        "rlrt/real_rows": float(n_real),
        "rlrt/scored_rows": float(len(teacher_rows)),
        "rlrt/student_tokens": float(student_tokens),
        "rlrt/teacher_tokens": float(teacher_tokens),
        "rlrt/student_sq_tokens": float(sum(n * n for n in student_lens)),
        "rlrt/teacher_sq_tokens": float(sum(n * n for n in teacher_lens)),
        "rlrt/leak_cue_rate": privileged.leak_cue_rate(probe_texts, cue) if probe_texts else 0.0,
    }
    counts = privileged.case_counts([ctx for ctx, r in zip(contexts, real.tolist()) if r])
    metrics.update({f"rlrt/context/{case}": float(count) for case, count in counts.items()})
    return metrics


# ---------------------------------------------------------------------------------------------- the step


class TeacherStep:
    """Builds, scores and aligns the privileged teacher rows of one step (see the module docstring): the pure
    pieces above in order, and the one call to the actor's ``compute_log_prob``.

    A multimodal model (a ``processor`` with an image processor) needs ``images``, the rollout's images of a row's
    messages (``dataset_images``): prompts are rendered through the processor with them (``data.mm_processor_kwargs``
    as ``mm_processor_kwargs``), and every teacher row carries ``multi_modal_inputs`` and the processor's position ids
    (``VisionInputs``), in the ``compute_log_prob`` batch or, for the top-K pass, handed to ``score_rows``. Text-only
    models (no processor) build exactly the rows they always did."""

    def __init__(self, *, rlrt_cfg: RlrtConfig, adv_estimator: str, tokenizer: Any, hf_model_type: str | None,
                 chat_template_kwargs: dict[str, Any], prompt_length: int, layout: TeacherBatchLayout,
                 algorithm_config: Any = None, use_kl_in_reward: bool = False,
                 eos_token_ids: Collection[int] | None = None, loss_mode: str = "vanilla",
                 teacher_chat_template_kwargs: dict[str, Any] | None = None, processor: Any = None,
                 mm_processor_kwargs: dict[str, Any] | None = None, images: FetchImages | None = None):
        self.cfg = rlrt_cfg
        self.adv_estimator = adv_estimator
        self.tokenizer = tokenizer
        multimodal = is_multimodal(processor)
        if multimodal and images is None:
            raise ValueError("the teacher step of a multimodal model needs the rollout's images of each row: pass "
                             "images=dataset_images(get_dataset_class(data), data, processor)")
        self.images = ConversationImages(images) if multimodal else None
        self.vision = VisionInputs(processor, tokenizer, mm_processor_kwargs) if multimodal else None
        renderer = dict(hf_model_type=hf_model_type, processor=processor, mm_processor_kwargs=mm_processor_kwargs,
                        images=self.images)
        self.render = PromptRenderer(tokenizer, chat_template_kwargs=chat_template_kwargs, **renderer)
        teacher_kwargs = resolved_teacher_kwargs(chat_template_kwargs, teacher_chat_template_kwargs)
        self.render_teacher = self.render if teacher_kwargs == dict(chat_template_kwargs) else PromptRenderer(
            tokenizer, chat_template_kwargs=teacher_kwargs, **renderer)
        self.prompt_length = prompt_length
        self.layout = layout
        self.algorithm_config = algorithm_config
        self.use_kl_in_reward = use_kl_in_reward
        self.loss_mode = loss_mode
        self.context = rlrt_cfg.context or "solution"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_token_ids = set(eos_token_ids) if eos_token_ids else {tokenizer.eos_token_id}
        self.teacher_entropy = rlrt_cfg.confidence_min is not None  # G_t reads H_T from this pass
        self._warned_16_bit = False

    def run(self, data: TensorDict, is_padding: Sequence[bool], step: int, compute_log_prob: ComputeLogProb | None,
            score_rows: ScoreRows | None = None) -> tuple[TensorDict, dict[str, float]]:
        """Teacher fields for every row of ``data`` (the stored batch, ``INPUT_FIELDS``) and the step's metrics,
        with the driver's seconds per part as ``timing_s/teacher/<part>`` (the forward is ``.../forward``). The
        teacher rows are scored by one ``compute_log_prob`` call, or by ``score_rows`` when given."""
        cfg, timing = self.cfg, {}
        self.render.clear()
        self.render_teacher.clear()
        n = len(is_padding)
        real = torch.tensor([not p for p in is_padding], dtype=torch.bool)  # [B]
        with simple_timer("rows", timing):
            rows = row_infos(data, n)
            uids = [row.uid for row in rows]
            prompts, responses = data["prompts"].unbind(), data["responses"].unbind()
            check_student_prompts(rows, prompts, real, self.render, self.prompt_length)
        with simple_timer("select", timing):
            padded = data.select("rm_scores", "response_mask", "old_log_probs").to_padded_tensor()
            response_mask = padded["response_mask"]  # [B, T]
            scores = padded["rm_scores"].float().sum(-1)  # [B] r⁽ⁱ⁾
            correct = (scores >= cfg.correct_threshold) & real  # [B]; padding rows are never correct
            # RLRT's c is a complete correct rollout: one cut at the length limit is never a sibling
            candidates = correct & finished_rows(responses, self.eos_token_ids)  # [B]
            scored = select_rows(padded["rm_scores"], response_mask, uids, real, correct, step, cfg=cfg,
                                 adv_estimator=self.adv_estimator, algorithm_config=self.algorithm_config,
                                 use_kl_in_reward=self.use_kl_in_reward, loss_mode=self.loss_mode)  # [B]
            probe = leak_probe_rows(real, step)
        with simple_timer("decode", timing):
            texts = decode(self.tokenizer, responses, sibling_rows(uids, candidates, scored, self.context) + probe)
        with simple_timer("contexts", timing):  # renders every sibling prompt for its length budget
            tails = generation_prompt_tails(rows, prompts, scored, self.render, self.render_teacher,
                                            self.tokenizer.decode)
            contexts = privileged.teacher_contexts(
                rows, context=self.context, scored=scored.tolist(), count_tokens=self.render_teacher.count_tokens,
                budget=cfg.max_privileged_prompt_length, templates=cfg.privileged_templates,
                sibling_candidates=candidates.tolist(), texts=texts, step=step, sibling_choice=cfg.sibling_choice,
                sibling_fallback=cfg.sibling_fallback, sibling_strip_thinking=cfg.sibling_strip_thinking,
                appended_tokens=[len(tail) for tail in tails],
            )
        teacher_rows = [i for i, ctx in enumerate(contexts) if ctx.messages is not None]
        teacher_prompts, scored_log_probs, scored_entropy, rows_sent, vision_rows = [], [], [], 0, None
        if teacher_rows:  # no batch and no call when no row needs τ (e.g. once λ = 0)
            with simple_timer("batch", timing):
                teacher_prompts = [teacher_prompt_ids(contexts[i].messages, rows[i], tails[i], self.render,
                                                      self.render_teacher, self.tokenizer.decode)
                                   for i in teacher_rows]
                teacher_responses = [responses[i] for i in teacher_rows]
                images = ([self.images(contexts[i].messages) for i in teacher_rows] if self.images is not None
                          else None)  # the student's images: the teacher keeps its image blocks
                if score_rows is None:
                    batch = build_teacher_batch(teacher_prompts, teacher_responses, self.layout, self.pad_id,
                                                calculate_entropy=self.teacher_entropy, vision=self.vision,
                                                images=images)
                    rows_sent = len(batch)  # data-parallel padding included
                elif self.vision is not None:  # the top-K pass builds its rows on the workers: send them the pixels
                    vision_rows = [self.vision(torch.cat([torch.tensor(p, dtype=torch.int64), r.to(torch.int64)]), im)
                                   for p, r, im in zip(teacher_prompts, teacher_responses, images, strict=True)]
            with simple_timer("forward", timing):
                if score_rows is None:
                    output = compute_log_prob(batch)
                    scored_log_probs = response_log_probs(output, batch, len(teacher_rows))
                    if self.teacher_entropy:
                        scored_entropy = response_log_probs(output, batch, len(teacher_rows), key="entropy")
                else:
                    scored_log_probs, rows_sent = score_rows(teacher_rows, teacher_prompts,
                                                             vision_rows)
        with simple_timer("outputs", timing):
            old = data["old_log_probs"].unbind()
            teacher = list(old)  # unscored rows get s: Δ = 0
            for i, log_probs in zip(teacher_rows, scored_log_probs):
                teacher[i] = log_probs.to(old[i].dtype)
            has_teacher = torch.zeros(n, dtype=torch.bool)
            has_teacher[teacher_rows] = True
            check_finite(teacher, old, response_mask, rows, has_teacher)
            self.warn_once_if_16_bit(data["old_log_probs"].dtype, *(lp.dtype for lp in scored_log_probs[:1]))
            fields = TensorDict({"teacher_log_probs": tu.nested_tensor_from_tensor_list(teacher),
                                 "has_teacher": has_teacher, "correct": correct}, batch_size=[n])
            if self.teacher_entropy:
                entropy = [torch.zeros(len(lp), dtype=torch.float32) for lp in old]  # H = 0: G = 1 on unscored rows
                for i, values in zip(teacher_rows, scored_entropy):
                    entropy[i] = values.float()
                fields[TEACHER_ENTROPY_FIELD] = tu.nested_tensor_from_tensor_list(entropy)
        with simple_timer("metrics", timing):
            metrics = teacher_metrics(
                uids=uids, real=real, correct=correct, scores=scores, gate=cfg.gate, contexts=contexts,
                teacher_rows=teacher_rows, prompt_lens=[len(p) for p in prompts],
                teacher_prompt_lens=[len(p) for p in teacher_prompts], response_mask=response_mask,
                probe_texts=[texts[i] for i in probe], cue=privileged.CUE_PHRASES[self.context],
            )
            means = scored_log_prob_means(tu.nested_tensor_from_tensor_list(teacher).to_padded_tensor(0.0), padded["old_log_probs"],
                                          response_mask, has_teacher)
            metrics.update({f"rlrt/{key}": value for key, value in means.items()})
            real_entropy = [h.float() for h, i in zip(scored_entropy, teacher_rows) if real[i]]
            if real_entropy:  # H_T over the scored tokens of real rows (the factor's input)
                metrics["rlrt/teacher_entropy"] = float(torch.cat(real_entropy).mean())
        metrics.update({
            "rlrt/teacher_calls": float(bool(teacher_rows)),
            "rlrt/teacher_rows_sent": float(rows_sent),
            "rlrt/teacher_forward_s": timing.get("forward", 0.0),
        })
        metrics.update({f"timing_s/teacher/{part}": seconds for part, seconds in timing.items()})
        return fields, metrics

    def warn_once_if_16_bit(self, *dtypes: torch.dtype) -> None:
        """Warn once per run when the student's or the teacher's log-probs arrive in 16 bits: Δ is then quantised."""
        low = [d for d in dtypes if d in (torch.bfloat16, torch.float16)]
        if not low or self._warned_16_bit:
            return
        self._warned_16_bit = True
        logger.warning(
            "rlrt: the actor returned %s log-probs, so Δ = τ − s is quantised to ~0.03 nats (bf16 has 8 mantissa "
            "bits), a large part of RLSD's ε_w = 0.2 band. verl returns fp32 log-probs only through flash-attn's "
            "cross-entropy kernel: install flash-attn and leave VERL_DISABLE_FLASH_ATTN_CE unset (or run the actor "
            "in fp32, as recipes/env/cpu.yaml does). docs/methods.md, 'Numerics'", low[0],
        )
