"""The actor-rollout-ref worker of our trainer modes when the teacher is not the live actor or a top-K loss runs
(``RlrtActorRolloutRefWorker``), and always under ``rlrt_separate_async`` (``RlrtDetachActorWorker``, on verl's
π_old-keeping worker): our registered methods (``RlrtWorkerMethods``) mixed into verl's worker class.

verl builds a reference model (θ₀, from ``actor_rollout_ref.model.path``) inside its fused
``ActorRolloutRefWorker`` only for a KL term, and offers no way to copy the actor's weights into it. This subclass
adds registered methods:

- ``sync_teacher_from_actor`` copies each rank's FSDP2 local shards of the actor into the reference model: the
  ``snapshot`` teacher (RLSD's teacher, synchronised with the student every N steps). The ``frozen`` teacher uses the
  reference model as verl builds it.
- ``compute_log_prob`` is verl's, and when the trainer asks (``TOPK_SELECT_FLAG``) also returns θ_old's top-K ids
  over each response (``topk.TOPK_IDS``) from the same forward: the select step of the ``sdpo``/``srpo`` losses.
- ``compute_teacher_topk`` runs their teacher pass (``topk.py``): the teacher's log-probs at those ids, reading and
  writing TransferQueue directly.
- ``update_actor`` is verl's, with ``distillation_use_topk`` switched on when the trainer asks for it
  (``TOPK_UPDATE_FLAG``): verl's ``_update_actor`` sets that key only for its own distillation.

The trainer installs this class by overriding ``_init_resource_pool_mgr`` (verl's own seam, as its
``separate_async`` trainer does).

This module must not import the trainer: Ray unpickles the class in every worker process (DESIGN.md, import order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.experimental.separation.engine_workers import DetachActorWorker
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker

from rlrt_recipe.integration import topk
from rlrt_recipe.integration.snapshot import SnapshotCopyMixin, local_shard

#: Non-tensor keys of a batch (``KVBatchMeta.extra_info``) that switch on the top-K work: K for the old-log-prob
#: pass (θ_old's top-K ids), true for the update (verl's logits-processor call).
TOPK_SELECT_FLAG = "rlrt_topk_select"
TOPK_UPDATE_FLAG = "rlrt_topk_update"


class RlrtWorkerMethods:
    """Our registered methods, mixed in before verl's fused worker class (``RlrtActorRolloutRefWorker``) or its
    ``separate_async`` subclass with the π_old snapshot (``RlrtDetachActorWorker``)."""

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
                local_ref, local_actor = local_shard(ref_param), local_shard(source)
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
    def compute_log_prob(self, data: TensorDict) -> TensorDict:
        """verl's ``compute_log_prob``; with ``TOPK_SELECT_FLAG = K`` the same forward also returns θ_old's top-K ids
        over each response as ``topk.TOPK_IDS`` ([R, K] int32; a logits processor, the K columns dropped)."""
        k = tu.pop(data, key=TOPK_SELECT_FLAG, default=None)
        if not k:
            return super().compute_log_prob(data)
        response_lens = data["response_mask"].offsets().diff().tolist()
        with processor_as_loss(self.actor, data, topk.select_processor(int(k))):
            output = super().compute_log_prob(data)
        if output is None:  # a rank that returns no outputs (verl's pipeline stages)
            return output
        ids = topk.response_windows(topk.stack_columns(output, topk.ID_COLUMN, int(k)), response_lens)
        for j in range(int(k)):
            del output[f"{topk.ID_COLUMN}{j}"]
        output[topk.TOPK_IDS] = topk.nested_rows([row.to(torch.int32) for row in ids])
        return output

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def compute_teacher_topk(self, data: TensorDict) -> TensorDict:
        """The top-K teacher pass over this rank's rows (``topk.TEACHER_PASS_INPUTS``, and for a multimodal model
        ``topk.TEACHER_PASS_VISION_INPUTS``; non-tensor ``rlrt_topk_k``, ``temperature``, ``rlrt_teacher_on_reference``,
        ``rlrt_no_lora_adapter``): ``topk.TEACHER_PASS_OUTPUTS`` for every row, response-shaped. Rows without
        ``has_teacher`` are forwarded as ``topk.MINIMAL_ROW`` (every rank must run the same micro-batches) and get zero
        placeholders (``topk.teacher_pass_batch``)."""
        k = int(tu.get(data, "rlrt_topk_k"))
        teacher = self.ref if tu.get(data, "rlrt_teacher_on_reference") else self.actor
        has_teacher = data["has_teacher"].bool().tolist()
        responses = data["responses"].unbind()
        gather, response_lens = topk.teacher_pass_batch(data, k)
        with processor_as_loss(teacher, gather, topk.gather_processor(k)):
            gathered = teacher.infer_batch(gather)
        values = topk.response_windows(topk.stack_columns(gathered, topk.VALUE_COLUMN, k), response_lens)
        per_token = {name: topk.response_windows(gathered[key], response_lens) for name, key in (
            (topk.TEACHER_ENTROPY, "entropy"), (topk.TEACHER_TOPK_MASS, topk.MASS_COLUMN),
            (topk.TEACHER_TOKEN_LOG_PROBS, "log_probs"))}

        rows = []
        for i, scored in enumerate(has_teacher):
            if not scored:
                rows.append(topk.placeholder_outputs(k, len(responses[i])))
                continue
            row = {topk.TEACHER_TOPK_LOG_PROBS: values[i].to(torch.bfloat16)}
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


@contextmanager
def processor_as_loss(worker: TrainingWorker, data: TensorDict, processor) -> Iterator[None]:
    """Within the block, ``worker`` infers ``data`` with ``processor`` as its loss function, which verl's engine calls
    as a logits processor (``distillation_use_topk``) and then as a loss (``compute_loss``); the worker's own loss
    function is restored after. Under dynamic batch size the token budget is raised to the longest row."""
    engine_config = worker.engine_config
    if engine_config.use_dynamic_bsz:
        longest = int(data["input_ids"].offsets().diff().max())
        tu.assign_non_tensor(data, max_token_len_per_gpu=max(engine_config.infer_max_token_len_per_gpu, longest))
    tu.assign_non_tensor(data, compute_loss=True, distillation_use_topk=True)
    saved = worker.loss_fn
    worker.loss_fn = processor
    try:
        yield
    finally:
        worker.loss_fn = saved


class RlrtActorRolloutRefWorker(RlrtWorkerMethods, ActorRolloutRefWorker):
    """verl's fused worker plus our methods (``rlrt_sync``, ``rlrt_colocate_async``)."""


class RlrtDetachActorWorker(RlrtWorkerMethods, SnapshotCopyMixin, DetachActorWorker):
    """verl's ``separate_async`` worker (``save_model_to_cpu``/``restore_model_from_cpu`` of π_old; a copy also for
    parameters already on the CPU, ``snapshot.SnapshotCopyMixin``) plus our methods (``rlrt_separate_async``)."""
