"""verl's training worker in local gloo processes, without Ray: what the FSDP actor ranks compute, for tests.

``infer_batch(model_dir, batch, world_size=2)`` spawns ``world_size`` processes with ``VERL_PLATFORM=cpu`` (so
``import verl`` loads this plug-in's CPU backend: platform, gloo process group, FSDP2 engine on ``cpu``), builds
``TrainingWorker`` as verl's SFT trainer does without Ray (``verl/trainer/sft_trainer.py:165-174``) with the CPU
recipe's engine settings (``recipes/env/cpu.yaml``: FSDP2, fp32, sdpa, no torch.compile), hands each rank its
contiguous data-parallel shard as verl's dispatch does (``tensordict_utils.chunk_tensordict``, through a pickle
like Ray's) and runs ``TrainingWorker.infer_batch`` on all ranks at once; each rank packs its whole shard into one
micro-batch. The outputs come back per row, in batch order.
"""

from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.multiprocessing as mp
from tensordict import TensorDict

#: The CPU recipe's engine (``recipes/env/cpu.yaml``): verl's default bf16 autocast would make CPU log-probs bf16.
FP32 = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}


def infer_batch(model_dir: str, batch: TensorDict, *, world_size: int = 1, use_remove_padding: bool = True,
                processor: tuple[str, int] | None = None) -> dict[str, list[torch.Tensor]]:
    """Each output of ``TrainingWorker.infer_batch`` (e.g. ``log_probs``: entry j = log p(ids[j + 1] | ids[≤ j]),
    the last 0) as one tensor per row of ``batch`` [L_i], from ``world_size`` FSDP2 ranks on CPU. With
    ``processor=(name, k)`` the worker runs the logits processor ``topk.<name>(k)`` (``"select_processor"``,
    ``"gather_processor"``) as the top-K passes do (``worker.processor_as_loss``) and its columns come back too (named,
    not pickled: the ranks may import ``topk`` only after verl)."""
    from verl.utils import tensordict_utils as tu  # not at module top: the ranks import this module before verl

    if len(batch) % world_size:
        raise ValueError(f"the batch has {len(batch)} rows: not divisible into {world_size} data-parallel shards")
    shards = tu.chunk_tensordict(batch, world_size)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(world_size, _free_port(), model_dir, shards, use_remove_padding, processor, out_dir),
                 nprocs=world_size)
        per_rank = [torch.load(os.path.join(out_dir, f"rank{rank}.pt")) for rank in range(world_size)]
    return {key: [row for outputs in per_rank for row in outputs[key]] for key in per_rank[0]}


def _rank_main(rank: int, world_size: int, port: int, model_dir: str, shards: list[TensorDict],
               use_remove_padding: bool, processor: tuple[str, int] | None, out_dir: str) -> None:
    """One FSDP rank: the environment a Ray worker of verl gets, then the worker, then its shard's forward."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      VERL_PLATFORM="cpu")
    torch.set_num_threads(1)  # ranks share the cores; more threads each would only oversubscribe them
    import verl  # noqa: F401  (loads the plug-in, CPU backend first, before anything under verl.workers)
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig, TrainingWorkerConfig
    from verl.workers.engine_workers import TrainingWorker

    from rlrt_recipe.plugin import require_registrations

    require_registrations()
    shard = shards[rank]
    model_config = HFModelConfig(path=model_dir, use_remove_padding=use_remove_padding,
                                 override_config={"attn_implementation": "sdpa"})
    # forward_only would pin CPU memory (fails without an accelerator); the AdamW is never stepped.
    engine_config = FSDPEngineConfig(strategy="fsdp2", forward_only=False, use_torch_compile=False, mixed_precision=FP32,
                                     use_dynamic_bsz=False, infer_micro_batch_size_per_gpu=len(shard))
    worker = TrainingWorker(TrainingWorkerConfig(model_type="language_model", model_config=model_config,
                                                 engine_config=engine_config, optimizer_config=FSDPOptimizerConfig()))
    worker.reset()  # engine.initialize(): loads the model and shards it with FSDP2
    if processor is None:
        output = worker.infer_batch(shard)
    else:
        from rlrt_recipe.integration import topk
        from rlrt_recipe.integration.worker import processor_as_loss

        name, k = processor
        with processor_as_loss(worker, shard, getattr(topk, name)(k)):
            output = worker.infer_batch(shard)
    rows = {key: [row.clone() for row in value.unbind()] for key, value in output.items() if isinstance(value, torch.Tensor)}
    torch.save(rows, os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
