"""Our trainer modes: verl's V1 trainers plus the reference-with-privilege step.

``trainer.v1.trainer_mode=rlrt_sync`` (verl's ``sync``), ``rlrt_colocate_async`` (verl's ``colocate_async``) or
``rlrt_separate_async`` (verl's ``separate_async``): one implementation (``RlrtTeacherTrainer``) mixed into each of
verl's trainer classes, which runs with its own mode's semantics and reads its own section ``trainer.v1.<verl mode>``.
Per consumed batch (docs/methods.md):
  rollout → reward → balance → old log-probs s (``timing_s/old_log_prob_student``)
  → teacher log-probs τ on the same actor shards (``timing_s/teacher``; both inside verl's
    ``timing_s/old_log_prob``) → our estimator with the teacher fields → actor update with the ``self_distill`` loss.
With ``algorithm.adv_estimator=grpo`` or ``grpo_eb`` (which reads the old-log-prob pass's ``entropy`` instead) and
no distillation loss the teacher step is skipped (said once). With the ``sdpo``/``srpo`` losses the teacher pass is
the top-K one (``topk.py``, run by ``RlrtActorRolloutRefWorker.compute_teacher_topk``): the driver sends teacher prompt
ids through TransferQueue and reads back per-token scalars only; the [R, K] fields stay between workers and
TransferQueue. The asynchronous modes: docs/methods.md, "Asynchronous trainer modes".

Import order: importing this module imports ``verl.trainer.ppo.v1``, which with ``VERL_PLATFORM=cpu`` needs the
CPU platform registered first; ``rlrt_recipe.plugin`` imports the CPU backend before this module.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import ray
import torch
import transfer_queue as tq
from tensordict import NonTensorStack, TensorDict
from transfer_queue import KVBatchMeta
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.ray_trainer import apply_kl_penalty
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.dataset.rl_dataset import get_dataset_class
from verl.utils.debug import marked_timer
from verl.workers.config import HFModelConfig
from verl.workers.utils.padding import response_to_nested

from rlrt_recipe import signals
from rlrt_recipe.config import (
    DISTILL_LOSS_MODE,
    ENTROPY_BONUS_ESTIMATORS,
    ESTIMATOR_FORMS,
    REFERENCE_TEACHERS,
    TOPK_LOSS_MODES,
    WEIGHTED_ESTIMATORS,
    RlrtConfig,
    load_rlrt_config,
    policy_loss_mode,
)
from rlrt_recipe.integration import topk
from rlrt_recipe.integration.loss import installed_loss_fn
from rlrt_recipe.integration.preflight import SINGLE_TURN_AGENT, preflight_train_dataset
from rlrt_recipe.integration.registry import missing_registrations
from rlrt_recipe.integration.worker import (
    TOPK_SELECT_FLAG,
    TOPK_UPDATE_FLAG,
    RlrtActorRolloutRefWorker,
    RlrtDetachActorWorker,
)
from rlrt_recipe.integration.estimators import (
    STEP_INPUT,
    TRAINER_INPUTS,
    confidence_factor,
    estimator_inputs,
    grpo_advantages,
    span_tokens,
)
from rlrt_recipe.integration.images import dataset_images, is_multimodal
from rlrt_recipe.integration.teacher import (
    INPUT_FIELDS,
    OUTPUT_FIELDS,
    TeacherBatchLayout,
    TeacherStep,
    chat_template_kwargs,
    eos_token_ids,
    mm_processor_kwargs,
)

logger = logging.getLogger("rlrt_recipe")

TRAINER_MODE = "rlrt_sync"
COLOCATE_ASYNC_MODE = "rlrt_colocate_async"
SEPARATE_ASYNC_MODE = "rlrt_separate_async"
#: Our trainer modes, each verl's trainer of that mode with the teacher step.
TRAINER_MODES = (TRAINER_MODE, COLOCATE_ASYNC_MODE, SEPARATE_ASYNC_MODE)


def check_config(config) -> None:
    """Refuse, naming the key and the fix, every setting the teacher step cannot serve correctly."""
    algorithm, actor_rollout_ref = config.algorithm, config.actor_rollout_ref
    rlrt_cfg = load_rlrt_config(config)
    estimator = str(algorithm.adv_estimator)
    loss_mode = actor_rollout_ref.actor.policy_loss.get("loss_mode", "vanilla")
    if rlrt_cfg.distill_loss_coef > 0 and loss_mode != DISTILL_LOSS_MODE:
        raise ValueError(
            f"rlrt.distill_loss_coef={rlrt_cfg.distill_loss_coef} needs "
            f"actor_rollout_ref.actor.policy_loss.loss_mode={DISTILL_LOSS_MODE}, got {loss_mode!r}"
        )
    if config.get("distillation", {}).get("enabled", False):
        raise ValueError(
            "distillation.enabled=true installs verl's distillation loss, which the rlrt_sync trainer would replace "
            "with its own (set_loss_fn), silently dropping verl's term; set distillation.enabled=false (for "
            f"self-distillation use rlrt.distill_loss_coef with loss_mode={DISTILL_LOSS_MODE}) or another trainer mode"
        )
    correction = algorithm.get("rollout_correction", None)
    bypass_mode = correction is not None and correction.get("bypass_mode", False)
    if bypass_mode and estimator in ENTROPY_BONUS_ESTIMATORS:
        raise ValueError(
            f"algorithm.rollout_correction.bypass_mode=True skips verl's old-log-prob pass, which stores the token "
            f"entropy algorithm.adv_estimator={estimator} reads; set algorithm.rollout_correction.bypass_mode=False"
        )
    if loss_mode in TOPK_LOSS_MODES:
        _check_topk_config(config, loss_mode)
    if not rlrt_cfg.needs_teacher(estimator, loss_mode):
        return
    rollout = actor_rollout_ref.rollout
    if rollout.get("multi_turn", {}).get("enable", False):
        raise ValueError(
            "actor_rollout_ref.rollout.multi_turn.enable=true: the teacher step re-renders single-turn prompts only "
            "(the stored prompt of a multi-turn or tool rollout is not its raw_prompt); set it to false"
        )
    agent_loop = rollout.get("agent", {}).get("default_agent_loop", SINGLE_TURN_AGENT)
    if agent_loop != SINGLE_TURN_AGENT:
        raise ValueError(
            f"actor_rollout_ref.rollout.agent.default_agent_loop={agent_loop!r}: the teacher step serves only "
            f"{SINGLE_TURN_AGENT!r}, whose stored prompt is the re-rendered raw_prompt; set it to {SINGLE_TURN_AGENT}"
        )
    if rlrt_cfg.teacher == "snapshot":
        if _lora_rank(actor_rollout_ref.model):
            raise ValueError(
                "rlrt.teacher=snapshot copies the actor's weights into verl's reference model, which verl does not "
                f"build under LoRA ({_lora_key(actor_rollout_ref.actor.get('strategy', 'fsdp'))} > 0); use "
                "rlrt.teacher=frozen (the adapter disabled) or live"
            )
        strategies = {f"actor_rollout_ref.{part}.{key}": actor_rollout_ref[part].get(key) if key == "strategy"
                      else actor_rollout_ref[part].get("fsdp_config", {}).get("strategy")
                      for part in ("actor", "ref") for key in ("strategy", "fsdp_config.strategy")}
        not_fsdp2 = {key: value for key, value in strategies.items() if value != "fsdp2"}
        if not_fsdp2:
            raise ValueError(
                f"rlrt.teacher=snapshot copies FSDP2 shards: set {', '.join(f'{k}=fsdp2' for k in not_fsdp2)} "
                f"(got {not_fsdp2})"
            )
        save_freq = int(config.trainer.get("save_freq", -1))
        if save_freq > 0 and save_freq % rlrt_cfg.teacher_sync_steps:
            logger.warning(
                "rlrt.teacher=snapshot with trainer.save_freq=%d not a multiple of rlrt.teacher_sync_steps=%d: a run "
                "resumed from such a checkpoint refreshes its teacher from the loaded actor at the first step, which "
                "differs from the snapshot it would have had", save_freq, rlrt_cfg.teacher_sync_steps,
            )
    if rlrt_cfg.teacher in REFERENCE_TEACHERS and not _lora_rank(actor_rollout_ref.model):
        ref = actor_rollout_ref.ref
        if not (ref.get("log_prob_micro_batch_size_per_gpu") or ref.get("log_prob_use_dynamic_bsz")):
            raise ValueError(
                f"rlrt.teacher={rlrt_cfg.teacher} scores with verl's reference model: set "
                "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu (or actor.use_dynamic_bsz=true)"
            )
    if bypass_mode:
        raise ValueError(
            "algorithm.rollout_correction.bypass_mode=True makes old_log_probs the rollout engine's log-probs; "
            "the teacher's Δ = τ − s needs the actor's. Set algorithm.rollout_correction.bypass_mode=False"
        )
    if algorithm.get("filter_groups", {}).get("enable", False):
        raise ValueError(
            "algorithm.filter_groups.enable=True (dynamic sampling) is not supported with the teacher step yet; "
            "set it to False"
        )
    if estimator == "rlrt" and int(rollout.get("n", 1)) < 2:
        logger.warning(
            "algorithm.adv_estimator=rlrt with actor_rollout_ref.rollout.n=%s: no rollout has a sibling, so every "
            "correct rollout gets the rlrt.sibling_fallback context (%s); RLRT needs n >= 2",
            rollout.get("n", 1), rlrt_cfg.sibling_fallback,
        )


def _check_topk_config(config, loss_mode: str) -> None:
    """The settings the top-K losses need (module ``topk``): verl's grpo estimator, token-mean aggregation, the
    engine's logits-processor path, no sequence parallelism; for sdpo (no surrogate) no entropy or KL term."""
    algorithm, actor_rollout_ref = config.algorithm, config.actor_rollout_ref
    actor = actor_rollout_ref.actor
    if str(algorithm.adv_estimator) != "grpo":
        raise ValueError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode} runs on verl's GRPO advantage: set "
            f"algorithm.adv_estimator=grpo (got {algorithm.adv_estimator!r})"
        )
    if actor.get("loss_agg_mode", "token-mean") != "token-mean":
        raise ValueError(
            f"loss_mode={loss_mode} is a token mean (SDPO's and SRPO's aggregation): set "
            f"actor_rollout_ref.actor.loss_agg_mode=token-mean (got {actor.get('loss_agg_mode')!r})"
        )
    if actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ValueError(
            f"loss_mode={loss_mode} reads the logits through verl's logits-processor hook, which fused kernels skip: "
            "set actor_rollout_ref.model.use_fused_kernels=false"
        )
    for part in ("actor", "ref"):
        sp = int(actor_rollout_ref[part].get("ulysses_sequence_parallel_size", 1) or 1)
        if sp > 1:
            raise ValueError(
                f"loss_mode={loss_mode} does not support sequence parallelism yet (its logits processors see the whole "
                f"packed sequence): set actor_rollout_ref.{part}.ulysses_sequence_parallel_size=1 (got {sp})"
            )
    if loss_mode == "sdpo":
        if actor.get("use_kl_loss", False) or float(actor.get("entropy_coeff", 0.0) or 0.0) != 0.0:
            raise ValueError(
                "loss_mode=sdpo replaces verl's policy loss and with it the entropy and KL terms: set "
                "actor_rollout_ref.actor.entropy_coeff=0 and actor_rollout_ref.actor.use_kl_loss=false"
            )


def _lora_rank(model_cfg) -> int:
    """The LoRA rank of ``actor_rollout_ref.model``: FSDP reads ``lora_rank``, Megatron ``lora.rank``."""
    return int(model_cfg.get("lora_rank", 0) or (model_cfg.get("lora", None) or {}).get("rank", 0) or 0)


def _lora_key(strategy: str) -> str:
    return "actor_rollout_ref.model.lora.rank" if strategy == "megatron" else "actor_rollout_ref.model.lora_rank"


class RlrtTeacherTrainer:
    """The teacher step after the old log-probs, our estimators' advantage call and our losses, on any of verl's V1
    trainers: mixed in before verl's trainer class of ``VERL_MODE`` (``RlrtSyncTrainer`` and the asynchronous modes
    below). verl's trainer runs under our mode name with its own mode's semantics and config section."""

    #: The verl trainer mode whose semantics and ``trainer.v1.<mode>`` section this trainer has.
    VERL_MODE = "sync"
    #: The worker class installed when the teacher or the top-K losses need our worker methods, or always.
    WORKER_CLASS: type = RlrtActorRolloutRefWorker
    WORKER_ALWAYS = False

    def __init__(self, config):
        check_config(config)
        self.rlrt_cfg = load_rlrt_config(config)
        self.adv_estimator = str(config.algorithm.adv_estimator)
        self.loss_mode = policy_loss_mode(config)
        self.topk_loss = self.loss_mode in TOPK_LOSS_MODES
        self.teacher_enabled = self.rlrt_cfg.needs_teacher(self.adv_estimator, self.loss_mode)
        # frozen without LoRA and snapshot score with verl's reference model, built by our worker class
        self.teacher_on_reference = (self.teacher_enabled and self.rlrt_cfg.teacher in REFERENCE_TEACHERS
                                     and not _lora_rank(config.actor_rollout_ref.model))
        self._teacher_refreshed_at: int | None = None
        self._warned_empty_span = False
        super().__init__(config)

    @property
    def train_dataset(self):
        return self._train_dataset

    @train_dataset.setter
    def train_dataset(self, dataset):
        # verl's _init_dataloader creates the dataset and, in the same method, the sampler and dataloader on it
        # (trainer_base.py:710-749); this assignment is the one point in between where rows can still be dropped.
        self.preflight_dropped_rows = 0
        if self.teacher_enabled:
            self.preflight_dropped_rows = preflight_train_dataset(
                dataset, config=self.config, rlrt_cfg=self.rlrt_cfg, tokenizer=self.tokenizer,
                hf_model_type=getattr(self.hf_config, "model_type", None), **self._vision_settings(),
            )
        self._train_dataset = dataset

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        needs_reference = self.teacher_on_reference or self.topk_loss
        if not (needs_reference or self.WORKER_ALWAYS):
            return
        if Role.Actor in self.role_worker_mapping and not needs_reference:  # hybrid_engine=false: a pure actor role
            self.role_worker_mapping[Role.Actor] = ray.remote(self.WORKER_CLASS)
            return
        # verl builds its reference model inside the fused worker only under a KL term (need_reference_policy);
        # map the actor role to the fused actor+rollout+ref role with our worker class instead (no KL, no per-step
        # reference pass: use_reference_policy stays False). The top-K losses need our class for their teacher pass
        # and update, with the live teacher on the actor+rollout role. The ResourcePoolManager holds this same dict.
        if Role.Actor in self.role_worker_mapping:  # separate_async with hybrid_engine=false: a pure actor role
            raise ValueError(
                "actor_rollout_ref.hybrid_engine=false: rlrt.teacher=frozen/snapshot and the sdpo/srpo losses score "
                "with our fused actor-rollout-ref worker (verl's reference model inside it), which a pure actor role "
                "does not have; set actor_rollout_ref.hybrid_engine=true, or rlrt.teacher=live without a top-K loss"
            )
        role = Role.ActorRolloutRef if self.teacher_on_reference else Role.ActorRollout
        if role == Role.ActorRollout and Role.ActorRolloutRef in self.role_worker_mapping:
            role = Role.ActorRolloutRef  # verl already builds a reference model (a KL term): keep it
        for old in (Role.ActorRollout, Role.ActorRolloutRef):
            self.role_worker_mapping.pop(old, None)
            self.mapping.pop(old, None)
        self.role_worker_mapping[role] = ray.remote(self.WORKER_CLASS)
        self.mapping[role] = "global_pool"

    def _build_replay_buffer(self):
        # verl compares trainer_mode with the literal "sync" (trainer_base.py:153, 731, 902, 912, 1004, 1499) and
        # reads the mode's own section trainer.v1.<mode> (parameter_sync_step :130, the replay buffer's
        # trainer_config :157): under our name verl would pick the async buffer for rlrt_sync and the defaults of no
        # section for the async modes. PPOTrainer.__init__ sets both from our name and calls this method next
        # (trainer_base.py:129-131; pinned in test_trainer_advantage.py), so both are set here from VERL_MODE.
        self.trainer_mode = self.VERL_MODE
        self.parameter_sync_step = self.config.trainer.v1.get(self.VERL_MODE, {}).get("parameter_sync_step", 1)
        return super()._build_replay_buffer()

    def _init_tokenizer(self):
        # A mirror of trainer_base.py:701-706 (pinned in test_trainer_advantage.py) keeping the model's configs
        # too: model_type picks the agent loop's token builder, max_position_embeddings bounds the teacher rows,
        # the generation config's EOS ids tell a finished rollout; the processor renders and encodes image rows.
        model_config: HFModelConfig = omega_conf_to_dataclass(self.config.actor_rollout_ref.model)
        self.tokenizer = model_config.tokenizer
        self.processor = model_config.processor
        self.hf_config = model_config.hf_config
        self.generation_config = model_config.generation_config

    def on_init_end(self):
        super().on_init_end()
        self.estimator_constants = estimator_constants(self.rlrt_cfg, self.tokenizer, self.hf_config)
        _check_registrations_on_trainer_nodes(self.resource_pool_manager)
        actor_cfg = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        if actor_cfg.policy_loss.loss_mode in (DISTILL_LOSS_MODE, *TOPK_LOSS_MODES):  # the registered losses need ours
            self.actor_rollout_wg.set_loss_fn(installed_loss_fn(actor_cfg, self.rlrt_cfg))
        if not self.teacher_enabled:
            logger.warning(
                "rlrt_sync: algorithm.adv_estimator=%s with no distillation loss needs no teacher; "
                "the teacher step is skipped (verl's sync step, with our advantage for grpo_eb)", self.adv_estimator
            )
            return
        self.teacher_step = self._build_teacher_step()

    def _build_teacher_step(self) -> TeacherStep:
        data, rollout, actor = self.config.data, self.config.actor_rollout_ref.rollout, self.config.actor_rollout_ref.actor
        longest = self.rlrt_cfg.max_privileged_prompt_length + data.max_response_length
        # the text model's (a multimodal config nests it: Qwen3VLConfig has none at the top level)
        max_positions = getattr(self.hf_config.get_text_config(), "max_position_embeddings", None)
        if max_positions is not None and longest > max_positions:
            raise ValueError(
                f"teacher rows can reach rlrt.max_privileged_prompt_length + data.max_response_length = {longest} "
                f"tokens, over the model's max_position_embeddings={max_positions}; lower "
                "rlrt.max_privileged_prompt_length or data.max_response_length"
            )
        wg = self.actor_rollout_wg
        if "actor" not in wg._dispatch_info:  # as PPOTrainer._balance_batch reads the data-parallel size
            wg._dispatch_info["actor"] = wg._query_dispatch_info("actor")
        if self.teacher_on_reference:  # verl's reference model: its own micro-batch keys (verl fills absent ones)
            ref = self.config.actor_rollout_ref.ref
            micro_batch, dynamic = ref.get("log_prob_micro_batch_size_per_gpu"), ref.get("log_prob_use_dynamic_bsz")
            max_tokens = ref.get("log_prob_max_token_len_per_gpu")
        else:
            micro_batch, dynamic = rollout.get("log_prob_micro_batch_size_per_gpu"), actor.use_dynamic_bsz
            max_tokens = rollout.get("log_prob_max_token_len_per_gpu")
        layout = TeacherBatchLayout(
            dp_size=max(wg._dispatch_info["actor"]) + 1,
            micro_batch_size_per_gpu=micro_batch,
            max_token_len_per_gpu=max_tokens if dynamic else None,
            temperature=float(rollout.temperature),
            no_lora_adapter=self.rlrt_cfg.teacher == "frozen" and not self.teacher_on_reference,
        )
        return TeacherStep(
            rlrt_cfg=self.rlrt_cfg, adv_estimator=self.adv_estimator, tokenizer=self.tokenizer,
            hf_model_type=getattr(self.hf_config, "model_type", None), chat_template_kwargs=chat_template_kwargs(data),
            prompt_length=int(rollout.prompt_length), layout=layout, algorithm_config=self.config.algorithm,
            use_kl_in_reward=bool(self.config.algorithm.use_kl_in_reward),
            eos_token_ids=eos_token_ids(self.tokenizer, self.generation_config), loss_mode=self.loss_mode,
            teacher_chat_template_kwargs=self.rlrt_cfg.teacher_chat_template_kwargs, **self._vision_settings(),
        )

    def _vision_settings(self) -> dict[str, Any]:
        """What the teacher step and the pre-flight need for a multimodal model (none for a text-only one): the
        processor, ``data.mm_processor_kwargs`` and the rollout's images of a row (the configured dataset class)."""
        if not is_multimodal(self.processor):
            return {}
        data = self.config.data
        return dict(processor=self.processor, mm_processor_kwargs=mm_processor_kwargs(data),
                    images=dataset_images(get_dataset_class(data), data, self.processor))

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        return self._old_log_prob_and_teacher(batch, metrics)

    def _student_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """s: verl's old-log-prob pass of this trainer mode."""
        return super()._compute_old_log_prob(batch, metrics)

    def _old_log_prob_and_teacher(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """s, then the teacher step on the same weights (θ_old): both passes of the step's old-log-prob phase."""
        if self.topk_loss:  # our worker's compute_log_prob also stores θ_old's top-K ids (topk.TOPK_IDS)
            batch.extra_info[TOPK_SELECT_FLAG] = self.rlrt_cfg.distill_topk
        sent = batch
        with marked_timer("old_log_prob_student", self.timing_raw):
            batch = self._student_old_log_prob(batch, metrics)
        if self.topk_loss:
            for meta in (sent, batch):  # the flag is for this pass only
                meta.extra_info.pop(TOPK_SELECT_FLAG, None)
            _require_fields(tq.kv_batch_get(keys=batch.keys[:1], partition_id=batch.partition_id,
                                            select_fields=[topk.TOPK_IDS]), (topk.TOPK_IDS,), "the top-K losses")
        if not self.teacher_enabled:
            return batch
        with marked_timer("teacher", self.timing_raw):
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=list(INPUT_FIELDS))
            _require_fields(data, INPUT_FIELDS, "the teacher step")
            is_padding = [tag.get("is_padding", False) for tag in batch.tags]
            teacher_metrics = self._refresh_teacher_if_due()
            score = (self.actor_rollout_wg.compute_ref_log_prob if self.teacher_on_reference
                     else self.actor_rollout_wg.compute_log_prob)
            score_rows = self._topk_teacher_pass(batch, data) if self.topk_loss else None
            fields, step_metrics = self.teacher_step.run(data, is_padding, self.global_steps, score, score_rows)
            teacher_metrics.update(step_metrics)
            batch = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
            if self.topk_loss:
                teacher_metrics.update(self._write_topk_loss_fields(batch, fields, is_padding))
        missing = [f for f in OUTPUT_FIELDS if f not in (batch.fields or [])]
        if missing:
            raise RuntimeError(f"TransferQueue did not store {missing} for every row of the batch")
        metrics.update(teacher_metrics)
        return batch

    def _topk_teacher_pass(self, batch: KVBatchMeta, data: TensorDict):
        """The ``score_rows`` of the teacher step for the top-K losses: writes every row's teacher prompt ids and
        ``has_teacher`` to TransferQueue, runs the workers' ``compute_teacher_topk`` on all rows (each worker reads its
        rows and θ_old's top-K ids from TransferQueue and writes ``topk.TEACHER_PASS_OUTPUTS`` back), and reads back τ
        only."""
        n = len(batch)

        def score_rows(teacher_rows, teacher_prompts, vision_rows):
            prompt_ids = [torch.tensor([self.teacher_step.pad_id])] * n
            for i, ids in zip(teacher_rows, teacher_prompts):
                prompt_ids[i] = torch.tensor(ids, dtype=torch.int64)
            has_teacher = torch.zeros(n, dtype=torch.bool)
            has_teacher[list(teacher_rows)] = True
            fields = TensorDict({topk.TEACHER_PROMPT_IDS: tu.nested_tensor_from_tensor_list(prompt_ids),
                                 "has_teacher": has_teacher}, batch_size=[n])
            pass_inputs = list(topk.TEACHER_PASS_INPUTS)
            if vision_rows is not None:  # each forwarded row's pixels and positions; the minimal row's for the others
                vision = [self.teacher_step.vision(torch.cat(topk.MINIMAL_ROW), None)] * n
                for i, row in zip(teacher_rows, vision_rows):
                    vision[i] = row
                inputs, positions = zip(*vision)
                fields[topk.TEACHER_MULTI_MODAL_INPUTS] = NonTensorStack(*inputs)
                fields[topk.TEACHER_POSITION_IDS] = tu.nested_tensor_from_tensor_list(list(positions), ragged_idx=2)
                pass_inputs += topk.TEACHER_PASS_VISION_INPUTS
            tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
            response_lens = data["response_mask"].offsets().diff().tolist()
            tokens = [len(prompt_ids[i]) + response_lens[i] if has_teacher[i] else 0 for i in range(n)]
            order = topk.balanced_order(tokens, self.teacher_step.layout.dp_size)
            extra_info = {"rlrt_topk_k": self.rlrt_cfg.distill_topk, "temperature": self.teacher_step.layout.temperature,
                          "rlrt_teacher_on_reference": self.teacher_on_reference,
                          "rlrt_no_lora_adapter": self.teacher_step.layout.no_lora_adapter}
            meta = KVBatchMeta(keys=[batch.keys[i] for i in order], tags=[batch.tags[i] for i in order],
                               partition_id=batch.partition_id, fields=pass_inputs,
                               extra_info=extra_info)
            self.actor_rollout_wg.compute_teacher_topk(meta)
            tau = tq.kv_batch_get(keys=[batch.keys[i] for i in teacher_rows], partition_id=batch.partition_id,
                                  select_fields=[topk.TEACHER_TOKEN_LOG_PROBS])
            _require_fields(tau, (topk.TEACHER_TOKEN_LOG_PROBS,), "the top-K teacher pass")
            return list(tau[topk.TEACHER_TOKEN_LOG_PROBS].unbind()), n

        return score_rows

    def _write_topk_loss_fields(self, batch: KVBatchMeta, fields: TensorDict, is_padding) -> dict[str, float]:
        """After the top-K teacher pass: each token's divergence weight (SRPO's exp(−β·H^T) normalised to mean 1 over
        the routed tokens of the step; 1 for SDPO) and, for SDPO, ``loss_mask`` reduced to the rows with a
        demonstration (verl's global token count is then SDPO's denominator); the pass's metrics. A step with no
        row to score made no pass: every row gets the placeholders of ``topk.placeholder_outputs``."""
        if not fields["has_teacher"].any():
            response_lens = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                            select_fields=["response_mask"])["response_mask"].offsets().diff().tolist()
            placeholders = topk.outputs_batch([topk.placeholder_outputs(self.rlrt_cfg.distill_topk, r)
                                               for r in response_lens])
            tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=placeholders)
        stored = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                 select_fields=["response_mask", topk.TEACHER_ENTROPY, topk.TEACHER_TOPK_MASS])
        _require_fields(stored, ("response_mask", topk.TEACHER_ENTROPY, topk.TEACHER_TOPK_MASS), "the top-K loss")
        response_mask = stored["response_mask"]
        padded = stored.to_padded_tensor()
        response = padded["response_mask"].bool()  # [B, T]
        routed = response & fields["has_teacher"].bool().reshape(-1, 1)  # [B, T]
        beta = self.rlrt_cfg.srpo_beta if self.loss_mode == "srpo" else 0.0
        weights = signals.srpo_token_weights(padded[topk.TEACHER_ENTROPY], routed, beta)  # [B, T]
        out = {topk.TOPK_TOKEN_WEIGHTS: response_to_nested(weights, response_mask)}
        if self.loss_mode == "sdpo":
            out["loss_mask"] = response_to_nested(routed.to(padded["response_mask"].dtype), response_mask)
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                        fields=TensorDict(out, batch_size=len(batch)))
        real = torch.tensor([not p for p in is_padding], dtype=torch.bool).reshape(-1, 1)
        n_routed, n_real = int((routed & real).sum()), int((response & real).sum())
        stored_bytes = topk.stored_topk_bytes(
            self.rlrt_cfg.distill_topk, response_tokens=int(response.sum()), routed_tokens=int(routed.sum()),
            placeholder_rows=len(batch) - int(fields["has_teacher"].sum()))
        metrics = {
            "rlrt/routed_token_frac": n_routed / max(n_real, 1),
            # the step's top-K fields in TransferQueue (padding rows included), between workers and TransferQueue only
            "rlrt/topk_bytes": float(stored_bytes),
        }
        if n_routed:
            mask = routed & real
            metrics["rlrt/teacher_topk_mass"] = float(padded[topk.TEACHER_TOPK_MASS][mask].mean())
            metrics["rlrt/teacher_entropy"] = float(padded[topk.TEACHER_ENTROPY][mask].mean())
        return metrics

    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if self.topk_loss:  # our worker's update_actor turns on verl's logits-processor call (distillation_use_topk)
            batch.extra_info[TOPK_UPDATE_FLAG] = True
        return super()._update_actor(batch, metrics)

    def _refresh_teacher_if_due(self) -> dict[str, float]:
        """The snapshot teacher: copy the actor into the reference model before the teacher pass of the steps
        ``rlrt_cfg.refreshes_teacher_at`` names, and at the first teacher step of a launch (a resume rebuilds the
        reference from the model path). ``rlrt/teacher_age_steps``: optimizer steps between the teacher's weights
        and θ_old of this step (live 0, frozen k − 1, snapshot k − the step of its last refresh)."""
        cfg, step = self.rlrt_cfg, self.global_steps
        metrics: dict[str, float] = {}
        if cfg.teacher == "snapshot" and (cfg.refreshes_teacher_at(step) or self._teacher_refreshed_at is None):
            if not cfg.refreshes_teacher_at(step):
                logger.warning("rlrt: snapshot teacher refreshed at step %d (first step of this launch), not on its "
                               "schedule: it now equals θ_old of this step", step)
            start = time.perf_counter()
            self.actor_rollout_wg.sync_teacher_from_actor()
            metrics["timing_s/teacher_refresh"] = time.perf_counter() - start
            self._teacher_refreshed_at = step
        refreshed = {"live": step, "frozen": 1, "snapshot": self._teacher_refreshed_at}[cfg.teacher]
        metrics["rlrt/teacher_age_steps"] = float(step - refreshed)
        return metrics

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if self.adv_estimator not in ESTIMATOR_FORMS:
            return super()._compute_advantage(batch, metrics)
        # Mirrors PPOTrainer._compute_advantage (verl 0.9.1 trainer_base.py:1743-1802) with the estimator
        # call replaced: verl's compute_advantage passes only rewards, mask, index and config.
        algorithm = self.config.algorithm
        # verl's list without "values" (only GAE reads it); TransferQueue leaves out the fields a run does not
        # store: ref_log_prob (read by apply_kl_penalty), rollout_log_probs (by the rollout correction).
        fields = ["uid", "response_mask", "rm_scores", "rollout_log_probs", "old_log_probs", "ref_log_prob"]
        inputs = estimator_inputs(self.adv_estimator, self.rlrt_cfg)  # the estimator's keywords besides rlrt_cfg
        stored_inputs = [name for name in inputs if name not in TRAINER_INPUTS]  # those read from TransferQueue
        fields += [name for name in stored_inputs if name not in fields]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        _require_fields(data, ("response_mask", "rm_scores", "old_log_probs", *stored_inputs), "the advantage")
        response_mask = data["response_mask"]
        data = DataProto(batch=data.to_padded_tensor())
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
        if algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=algorithm.kl_penalty)
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]
        rollout_corr_config = algorithm.get("rollout_correction", None)
        bypass_recomputing_logprobs = rollout_corr_config and rollout_corr_config.get("bypass_mode", False)
        rollout_correction = (
            rollout_corr_config is not None and "rollout_log_probs" in data.batch and not bypass_recomputing_logprobs
        )
        if rollout_correction:
            data, is_metrics = compute_rollout_correction_and_add_to_batch(data, rollout_corr_config)
            metrics.update(is_metrics)

        padded = data.batch
        held = {STEP_INPUT: self.global_steps, **self.estimator_constants}  # the TRAINER_INPUTS
        keywords = {name: held[name] if name in TRAINER_INPUTS else padded[name] for name in inputs}
        advantages, returns = get_adv_estimator_fn(self.adv_estimator)(
            padded["token_level_rewards"], padded["response_mask"], data.non_tensor_batch["uid"], algorithm,
            rlrt_cfg=self.rlrt_cfg, **keywords,
        )
        metrics.update(self._advantage_metrics(padded, data.non_tensor_batch["uid"]))

        output = {"advantages": advantages, "returns": returns}
        if algorithm.use_kl_in_reward:
            output["token_level_rewards"] = padded["token_level_rewards"]
        if rollout_correction:
            output["response_mask"] = padded["response_mask"]
            if "rollout_is_weights" in padded:
                output["rollout_is_weights"] = padded["rollout_is_weights"]
        nested = TensorDict({k: response_to_nested(v, response_mask) for k, v in output.items()}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=nested)

    def _compute_metrics(self, batch: KVBatchMeta, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        metrics.update(reward_timeout_metrics(batch))

    def _advantage_metrics(self, padded: TensorDict, index: np.ndarray) -> dict[str, float]:
        """Δ (and w) statistics over response tokens of rows with a teacher and A ≠ 0, λ of the step; for the
        entropy bonus (no teacher fields) the mean bonus ψ and the fraction of A ≠ 0 tokens where its cap binds."""
        cfg = self.rlrt_cfg
        weighted = self.adv_estimator in WEIGHTED_ESTIMATORS
        grpo = grpo_advantages(padded["token_level_rewards"], padded["response_mask"], index, self.config.algorithm)
        if self.adv_estimator in ENTROPY_BONUS_ESTIMATORS:
            stats = signals.entropy_bonus_statistics(
                grpo, padded["entropy"], padded["response_mask"], alpha=cfg.eb_alpha, kappa=cfg.eb_kappa
            )
            return {f"rlrt/{key}": value for key, value in stats.items()}
        stats = signals.gap_statistics(
            signals.privileged_gain(padded["teacher_log_probs"], padded["old_log_probs"]), grpo,
            padded["response_mask"], padded["has_teacher"].bool(),
            direction=cfg.direction if weighted else None, eps_w=cfg.eps_w if weighted else None,
        )
        metrics = {f"rlrt/{key}": value for key, value in stats.items()}
        if weighted:
            metrics["rlrt/lambda"] = cfg.lambda_at(self.global_steps)
        metrics.update(self._piece_metrics(padded))
        return metrics

    def _piece_metrics(self, padded: TensorDict) -> dict[str, float]:
        """Over the response tokens of rows with a teacher: ``rlrt/span_token_frac``, the share inside ``rlrt.span``
        (0 means the tags never matched: warned once), and ``rlrt/confidence_mean``, the mean G_t."""
        cfg, constants = self.rlrt_cfg, self.estimator_constants
        scored = padded["response_mask"].bool() & padded["has_teacher"].bool()[:, None]  # [B, T]
        if not scored.any():
            return {}
        metrics = {}
        tokens = span_tokens(cfg, padded.get("responses", None), padded["response_mask"],
                             constants["span_tag_ids"])
        if tokens is not None:
            metrics["rlrt/span_token_frac"] = float(tokens[scored].float().mean())
            if metrics["rlrt/span_token_frac"] == 0.0 and not self._warned_empty_span:
                self._warned_empty_span = True
                logger.warning("rlrt.span=%s: no response token of step %d lies in the span of rlrt.span_tags=%s "
                               "(ids %s): check the tags against the model's output", cfg.span, self.global_steps,
                               cfg.span_tags, constants["span_tag_ids"])
        confidence = confidence_factor(cfg, padded.get("teacher_entropy", None), padded["response_mask"],
                                       constants["vocab_size"])
        if confidence is not None:
            metrics["rlrt/confidence_mean"] = float(confidence[scored].mean())
        return metrics


@register_trainer(TRAINER_MODE)
class RlrtSyncTrainer(RlrtTeacherTrainer, PPOTrainerSync):
    """``PPOTrainerSync`` with the teacher step after the old log-probs and our estimators' advantage call."""

    VERL_MODE = "sync"


@register_trainer(COLOCATE_ASYNC_MODE)
class RlrtColocateAsyncTrainer(RlrtTeacherTrainer, PPOTrainerColocateAsync):
    """verl's ``colocate_async`` (partial rollouts on the training resources, ``trainer.v1.colocate_async``) with the
    teacher step: s and τ from the actor's weights when the batch is consumed, which may be ahead of the weights
    that sampled it."""

    VERL_MODE = "colocate_async"


@register_trainer(SEPARATE_ASYNC_MODE)
class RlrtSeparateAsyncTrainer(RlrtTeacherTrainer, PPOTrainerSeparateAsync):
    """verl's ``separate_async`` (a standalone rollout pool, ``parameter_sync_step`` local updates per step,
    ``trainer.v1.separate_async``) with the teacher step. verl computes s of every mini-batch of a step with π_old,
    the weights at the step's start, by swapping them in around the old-log-prob pass; the teacher pass runs inside
    that window, so a live teacher is π_old too."""

    VERL_MODE = "separate_async"
    WORKER_CLASS = RlrtDetachActorWorker
    WORKER_ALWAYS = True  # its π_old save copies CPU parameters, which verl's aliases (integration/snapshot.py)

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        # Mirrors PPOTrainerSeparateAsync._compute_old_log_prob (verl 0.9.1 trainer_separate_async.py:187-211,
        # pinned in test_trainer_modes.py) with verl's pass replaced by s and the teacher step, inside the window.
        rollout_corr_config = self.config.algorithm.get("rollout_correction", None)
        if rollout_corr_config and rollout_corr_config.get("bypass_mode", False):
            return self._old_log_prob_and_teacher(batch, metrics)
        if self.local_trigger_step == 0:
            self.actor_rollout_wg.save_model_to_cpu(0)
            return self._old_log_prob_and_teacher(batch, metrics)
        self.actor_rollout_wg.save_model_to_cpu(self.local_trigger_step)
        self.actor_rollout_wg.restore_model_from_cpu(0)
        result = self._old_log_prob_and_teacher(batch, metrics)
        self.actor_rollout_wg.restore_model_from_cpu(self.local_trigger_step)
        self.actor_rollout_wg.clear_cpu_model(self.local_trigger_step)
        return result

    def _student_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        return PPOTrainer._compute_old_log_prob(self, batch, metrics)  # the base pass: the window is open already


def estimator_constants(rlrt_cfg: RlrtConfig, tokenizer: Any, hf_config: Any) -> dict[str, Any]:
    """The estimator inputs fixed for a run (``TRAINER_INPUTS`` besides the step): ``span_tag_ids``, the
    ``rlrt.span_tags`` strings tokenized alone (no special tokens added), and ``vocab_size``, |V| of the model's
    logits (the text config's ``vocab_size``; multimodal configs nest it)."""
    open_tag, close_tag = rlrt_cfg.span_tags
    tag_ids = tuple(tokenizer.encode(tag, add_special_tokens=False) if tag else [] for tag in (open_tag, close_tag))
    if rlrt_cfg.span in ("thinking", "answer"):
        if not tag_ids[1]:
            raise ValueError(f"rlrt.span_tags close tag {close_tag!r} tokenizes to no token ids")
        for tag, ids in zip((open_tag, close_tag), tag_ids):
            if len(ids) > 1:
                logger.warning("rlrt.span_tags: %r is %d tokens %s, matched as that id sequence; a tokenizer can "
                               "merge it differently in context (single added tokens, as Qwen3's <think>, are exact)",
                               tag, len(ids), ids)
    vocab_size = getattr(hf_config.get_text_config(), "vocab_size", None)
    if rlrt_cfg.confidence_min is not None and not vocab_size:
        raise ValueError("rlrt.confidence_min needs the model's vocab_size (G_t = max(g_min, 1 − H/log|V|)), "
                         f"but the model config {type(hf_config).__name__} has none")
    return {"span_tag_ids": tag_ids, "vocab_size": vocab_size}


def reward_timeout_metrics(batch: KVBatchMeta) -> dict[str, float]:
    """``rlrt/reward_timeout_frac``: the share of the step's real rows whose reward reported ``timeout`` = 1
    (``rlrt_recipe.reward`` gave no verdict in time and scored 0). verl 0.9.1 keeps reward extra info in each row's
    ``extra_fields["reward_extra_info"]`` and reports it for validation only; nothing when no row has the key."""
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    if "extra_fields" not in data.keys():
        return {}
    flags = []
    for tag, row in zip(batch.tags, data["extra_fields"], strict=True):
        extra = getattr(row, "data", row)  # a NonTensorData per row, as verl's replay buffer unwraps it
        info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        if not tag.get("is_padding", False) and "timeout" in info:  # padding rows copy a real row's info
            flags.append(float(info["timeout"]))
    return {"rlrt/reward_timeout_frac": sum(flags) / len(flags)} if flags else {}


def _require_fields(data: TensorDict, fields, what: str) -> None:
    # TransferQueue silently leaves out a field that is missing for some keys (DESIGN.md, probe pitfalls).
    missing = [f for f in fields if f not in data.keys()]
    if missing:
        raise RuntimeError(f"{what} needs {missing} for every row of the batch, but TransferQueue returned none")


#: Seconds the registration probe waits for every trainer node (a node that cannot start a task fails init).
REGISTRATION_PROBE_TIMEOUT_S = 300.0


def trainer_node_ids(resource_pool_manager) -> list[str]:
    """Ray node ids that hold a bundle of the trainer's resource pools (the nodes verl's workers run on)."""
    nodes = set()
    for pool in resource_pool_manager.resource_pool_dict.values():
        for pg in pool.pgs or []:  # the placement groups verl made; get_placement_groups() would create missing ones
            nodes.update(ray.util.placement_group_table(pg)["bundles_to_node_id"].values())
    return sorted(nodes)


def _check_registrations_on_trainer_nodes(resource_pool_manager, timeout_s: float = REGISTRATION_PROBE_TIMEOUT_S) -> None:
    """Fail at init, naming the node, if a Ray process on one of the trainer's nodes does not see our estimators
    and loss after ``import verl`` (the plug-in is not installed there, or failed to load), or does not answer
    within ``timeout_s``. Nodes outside the trainer's resource pools are not probed (shared clusters)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rlrt_recipe.plugin import require_registrations

    require_registrations()
    probe = ray.remote(num_cpus=0)(missing_registrations)
    futures = {node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
               for node in trainer_node_ids(resource_pool_manager)}
    ready, _ = ray.wait(list(futures.values()), num_returns=len(futures), timeout=timeout_s)
    for node, future in futures.items():
        if future not in ready:
            raise RuntimeError(
                f"the plug-in registration probe on Ray node {node} did not answer within {timeout_s:.0f} s; "
                "check that the node can start a Ray task (resources, runtime env) and that rlrt-recipe is installed"
            )
        missing = ray.get(future)
        if missing:
            raise RuntimeError(
                f"on Ray node {node}, `import verl` does not register {', '.join(missing)}: install rlrt-recipe in "
                "every node's environment, or set VERL_USE_EXTERNAL_MODULES=rlrt_recipe.plugin for the workers"
            )
