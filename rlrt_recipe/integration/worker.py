"""The actor-rollout-ref worker of the ``rlrt_sync`` trainer when the teacher is not the live actor.

verl builds a reference model (θ₀, from ``actor_rollout_ref.model.path``) inside its fused
``ActorRolloutRefWorker`` only for a KL term, and offers no way to copy the actor's weights into it. This subclass
adds registered methods:

- ``sync_teacher_from_actor`` copies each rank's FSDP2 local shards of the actor into the reference model: the
  ``snapshot`` teacher (RLSD's teacher, synchronised with the student every N steps). The ``frozen`` teacher uses the
  reference model as verl builds it.
- ``compute_teacher_topk`` runs the top-K teacher pass of the ``sdpo`` and ``srpo`` losses (``topk.py``): θ_old's
  top-K ids on the actor, then the teacher's log-probs there, reading and writing TransferQueue directly.
- ``update_actor`` is verl's, with ``distillation_use_topk`` switched on when the trainer asks for it
  (``TOPK_UPDATE_FLAG``): verl's ``_update_actor`` sets that key only for its own distillation.

The trainer installs this class by overriding ``_init_resource_pool_mgr`` (verl's own seam, as its
``separate_async`` trainer does).

This module must not import the trainer: Ray unpickles the class in every worker process (DESIGN.md, import order).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker

from rlrt_recipe.integration import topk

#: Non-tensor key of the update's batch (``KVBatchMeta.extra_info``) that switches on verl's logits-processor call.
TOPK_UPDATE_FLAG = "rlrt_topk_update"


class RlrtActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's fused worker plus ``sync_teacher_from_actor`` (one copy of the actor's shards into the reference)."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def sync_teacher_from_actor(self) -> int:
        """Copy the actor's parameters into the reference model, rank by rank (each copies its own FSDP2 shard:
        no communication); return the number of elements this rank copied. Both must be FSDP2 modules built from
        the same model, so parameter names and shard placements match."""
        actor, ref = self.actor.engine.module, self.ref.engine.module
        for module in (actor, ref):
            module.reshard()  # the root may stay unsharded after a forward; the shards are what we copy
        actor_params = dict(actor.named_parameters())
        copied = 0
        with torch.no_grad():
            for name, ref_param in ref.named_parameters():
                source = actor_params[name]
                local_ref, local_actor = _local(ref_param), _local(source)
                if local_ref.shape != local_actor.shape:
                    raise RuntimeError(
                        f"teacher snapshot: parameter {name} is sharded differently in the actor {tuple(local_actor.shape)} "
                        f"and the reference {tuple(local_ref.shape)}; set the same fsdp_config (strategy fsdp2, "
                        "fsdp_size) for actor_rollout_ref.actor and actor_rollout_ref.ref"
                    )
                local_ref.copy_(local_actor)  # into the reference's own storage: a copy, never an alias
                copied += local_ref.numel()
        return copied

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def compute_teacher_topk(self, data: TensorDict) -> TensorDict:
        """The top-K teacher pass over this rank's rows (``topk.TEACHER_PASS_INPUTS``; non-tensor ``rlrt_topk_k``,
        ``temperature``, ``rlrt_teacher_on_reference``, ``rlrt_no_lora_adapter``): ``topk.TEACHER_PASS_OUTPUTS`` for every
        row, response-shaped. Rows without ``has_teacher`` are forwarded as minimal two-token rows (every rank must
        run the same micro-batches) and get zero placeholders."""
        k = int(tu.get(data, "rlrt_topk_k"))
        temperature = float(tu.get(data, "temperature"))
        teacher = self.ref if tu.get(data, "rlrt_teacher_on_reference") else self.actor
        has_teacher = data["has_teacher"].bool().tolist()
        prompts, responses = data["prompts"].unbind(), data["responses"].unbind()
        teacher_prompts = data[topk.TEACHER_PROMPT_IDS].unbind()
        minimal = torch.zeros(1, dtype=torch.int64)
        response_lens = [len(r) if h else 1 for r, h in zip(responses, has_teacher)]
        rows_responses = [r if h else minimal for r, h in zip(responses, has_teacher)]

        select = topk.rows_batch([p if h else minimal for p, h in zip(prompts, has_teacher)], rows_responses,
                                 temperature=temperature, calculate_entropy=False)
        selected = _infer_with_processor(self.actor, select, topk.select_processor(k))
        ids = topk.response_windows(topk.stack_columns(selected, topk.ID_COLUMN, k), response_lens)  # [R, K] per row

        gather_prompts = [p if h else minimal for p, h in zip(teacher_prompts, has_teacher)]
        gather = topk.rows_batch(gather_prompts, rows_responses, temperature=temperature, calculate_entropy=True,
                                 no_lora_adapter=bool(tu.get(data, "rlrt_no_lora_adapter", default=False)))
        gather[topk.GATHER_IDS] = topk.gather_ids([len(p) for p in gather_prompts], ids)
        gathered = _infer_with_processor(teacher, gather, topk.gather_processor(k))
        values = topk.response_windows(topk.stack_columns(gathered, topk.VALUE_COLUMN, k), response_lens)
        per_token = {name: topk.response_windows(gathered[key], response_lens) for name, key in (
            (topk.TEACHER_ENTROPY, "entropy"), (topk.TEACHER_TOPK_MASS, topk.MASS_COLUMN),
            (topk.TEACHER_TOKEN_LOG_PROBS, "log_probs"))}

        rows = []
        for i, scored in enumerate(has_teacher):
            if not scored:
                rows.append(topk.placeholder_outputs(k, len(responses[i])))
                continue
            row = {topk.TOPK_IDS: ids[i].to(torch.int32), topk.TEACHER_TOPK_LOG_PROBS: values[i].to(torch.bfloat16)}
            row.update({name: windows[i].float() for name, windows in per_token.items()})
            rows.append(row)
        return topk.outputs_batch(rows)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def update_actor(self, data: TensorDict) -> TensorDict:
        """verl's ``update_actor``; with ``TOPK_UPDATE_FLAG`` set, the engine first calls the loss function as a
        logits processor in every micro-batch (``distillation_use_topk``), which the top-K losses need."""
        if tu.pop(data, key=TOPK_UPDATE_FLAG, default=False):
            tu.assign_non_tensor(data, distillation_use_topk=True)
        return super().update_actor(data)


def _infer_with_processor(worker: TrainingWorker, data: TensorDict, processor) -> TensorDict:
    """``worker.infer_batch(data)`` with ``processor`` as its loss function, called by verl's engine as a logits
    processor (``distillation_use_topk``) and then as a loss (``compute_loss``); the worker's own loss function is
    restored after. Under dynamic batch size the token budget is raised to the longest row."""
    engine_config = worker.engine_config
    if engine_config.use_dynamic_bsz:
        longest = int(data["input_ids"].offsets().diff().max())
        tu.assign_non_tensor(data, max_token_len_per_gpu=max(engine_config.infer_max_token_len_per_gpu, longest))
    tu.assign_non_tensor(data, compute_loss=True, distillation_use_topk=True)
    saved = worker.loss_fn
    worker.loss_fn = processor
    try:
        return worker.infer_batch(data)
    finally:
        worker.loss_fn = saved


def _local(param: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 parameter (a DTensor), or the tensor itself."""
    return param.to_local() if hasattr(param, "to_local") else param
