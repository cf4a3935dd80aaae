"""π_old snapshots that are copies: ``separate_async``'s save/restore of the actor's weights, fixed for CPU parameters.

verl's ``separate_async`` keeps π_old, the weights at a step's start, with ``DetachActorWorker.save_model_to_cpu`` and
swaps it in around every later mini-batch's old-log-prob pass (``trainer_separate_async.py:187-211``). For FSDP2 the
snapshot is ``fsdp2_sharded_save_to_cpu`` (``verl/utils/fsdp_utils.py:1146``), which takes each shard with
``tensor.detach().cpu()``: on a CPU parameter that is the parameter itself, not a copy (FSDP1's helper copies:
``.to("cpu", copy=True)``, L1121). The snapshot then follows every optimizer step, ``restore_model_from_cpu(0)``
copies the live weights onto themselves, and every mini-batch's s is computed with the current weights instead of
π_old, silently. ``SnapshotCopyMixin`` gives ``DetachActorWorker`` a save handler that clones every shard still sharing
storage with its live parameter (none on an accelerator, where ``.cpu()`` already copied). verl's restore copies
into the live shards (L1235, L1240), so it needs no change.
``tests/test_cpu_checkpoint_engine.py`` shows the alias with verl's worker and the copy with ours
(``worker.RlrtDetachActorWorker``, the ``rlrt_separate_async`` trainer's worker).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.distributed.tensor import DTensor
from verl.utils.fsdp_utils import fsdp2_sharded_save_to_cpu

#: The strategies whose snapshot is ``fsdp2_sharded_save_to_cpu`` (``engine_workers.py:93`` in verl's separation).
FSDP2_STRATEGIES = ("fsdp2", "veomni")


def local_shard(param: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 parameter (a DTensor), or the tensor itself."""
    return param.to_local() if isinstance(param, DTensor) else param


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of one storage (writing one changes the other)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def fsdp2_sharded_copy_to_cpu(model: torch.nn.Module):
    """``fsdp2_sharded_save_to_cpu(model)`` with every shard that aliases its live parameter cloned; same return
    value ``(cpu_sharded_state, global_spec)``, so verl's ``fsdp2_sharded_load_from_cpu`` restores it."""
    cpu_sharded_state, global_spec = fsdp2_sharded_save_to_cpu(model)
    live = dict(model.named_parameters())
    copied = {
        name: (tensor.clone() if shares_storage(tensor, local_shard(live[name])) else tensor, spec)
        for name, (tensor, spec) in cpu_sharded_state.items()
    }
    return copied, global_spec


class SnapshotCopyMixin:
    """Put before ``DetachActorWorker`` (or a subclass) in the bases: π_old snapshots become copies for FSDP2."""

    @property
    def copy_handler(self) -> Callable:
        if self.config.actor.strategy in FSDP2_STRATEGIES:
            return fsdp2_sharded_copy_to_cpu
        return super().copy_handler
