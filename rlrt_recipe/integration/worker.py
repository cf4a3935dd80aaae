"""The actor-rollout-ref worker of the ``rlrt_sync`` trainer when the teacher is not the live actor.

verl builds a reference model (θ₀, from ``actor_rollout_ref.model.path``) inside its fused
``ActorRolloutRefWorker`` only for a KL term, and offers no way to copy the actor's weights into it. This subclass
adds one registered method, ``sync_teacher_from_actor``, that copies each rank's FSDP2 local shards of the actor
into the reference model: the ``snapshot`` teacher (RLSD's teacher, synchronised with the student every N steps).
The ``frozen`` teacher uses the reference model as verl builds it. The trainer installs this class by overriding
``_init_resource_pool_mgr`` (verl's own seam, as its ``separate_async`` trainer does).

This module must not import the trainer: Ray unpickles the class in every worker process (DESIGN.md, import order).
"""

from __future__ import annotations

import torch
from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import ActorRolloutRefWorker


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


def _local(param: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 parameter (a DTensor), or the tensor itself."""
    return param.to_local() if hasattr(param, "to_local") else param
