"""The ``object_store`` checkpoint engine: the actor's full weights reach standalone rollout replicas through Ray.

verl's ``separate_async`` trainer refuses ``checkpoint_engine.backend=naive`` (``trainer_separate_async.py:68``), and
every other engine verl 0.9.1 ships needs an accelerator library (cupy for ``nccl``/``nixl``/``delta_sharded``,
vllm for ``hccl``, mooncake, kimi's checkpoint_engine): on a CPU-only machine ``CheckpointEngineRegistry`` holds
``naive`` alone and the actor fails at ``init_model`` with ``Checkpoint engine nccl not registered``. This engine
needs nothing but Ray, which verl runs on already.

One sync, as ``CheckpointEngineManager.update_weights`` drives it (``verl/checkpoint_engine/base.py:510-562``):
  prepare          actor rank 0 (``is_master``) makes this sync's token and, at its first sync, the channel (a Ray
                   queue it owns and keeps)
  build_topology   every actor rank and every rollout ``CheckpointEngineWorker`` gets channel, token, receiver count
  send_weights     every actor rank drains the generator (FSDP2's ``full_tensor()`` in it is a collective); rank 0
                   puts the state dict in the object store once and one reference per receiver in the queue
  receive_weights  each rollout worker takes a reference, checks the token, fetches the state dict and yields it to
                   the rollout adapter (``HFRolloutAdapter.update_weights``, which forwards it to the server)
  finalize         rank 0 drops its reference; the object lives while a receiver still holds one.
Why the object store rather than a gloo group: one sender hands one Python object to a few receivers, so Ray does
the work a collective engine does by hand (no port, no rendezvous per sync, no bucket protocol for names, shapes and
dtypes; shared memory on one node, Ray's transfer across nodes), and tensors travel as their bytes (bit-exact).
The whole state dict is one object: ``bucket_size`` (passed by verl to every engine) is not used.

Registered at import. verl imports ``checkpoint_engine.custom_backend_module`` in the driver, the actor ranks and the
rollout's checkpoint-engine workers before it builds an engine, so
``actor_rollout_ref.rollout.checkpoint_engine.custom_backend_module=rlrt_recipe.cpu.checkpoint_engine`` is all a run
needs (``tests/test_cpu_checkpoint_engine.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.util.queue import Empty, Queue
from verl.checkpoint_engine.base import CheckpointEngine, CheckpointEngineRegistry
from verl.workers.rollout.utils import ensure_async_iterator

BACKEND = "object_store"


@dataclass(frozen=True)
class WeightChannel:
    """Where one sync's weights travel: the sender's queue, the sync's token and how many workers receive."""

    queue: Queue
    token: str
    num_receivers: int


class ObjectStoreCheckpointEngine(CheckpointEngine):
    """Actor rank 0 sends the full state dict once per sync; every rollout worker receives it from Ray's object store.

    Args:
        bucket_size: passed by verl to every engine (``update_weights_bucket_megabytes``); unused, see the module.
        is_master: True on actor rank 0, the one sender; verl passes False (or nothing) everywhere else.
        timeout_s: how long a rollout worker waits for the actor's weights before it fails
            (``checkpoint_engine.engine_kwargs.object_store.timeout_s``).
    """

    def __init__(self, bucket_size: int, is_master: bool = False, timeout_s: float = 600.0) -> None:
        self.bucket_size = bucket_size
        self.is_master = is_master
        self.timeout_s = timeout_s
        self._queue: Queue | None = None  # the sender's; made at the first sync, reused by every later one
        self._channel: WeightChannel | None = None
        self._sent: ray.ObjectRef | None = None

    def prepare(self) -> dict[str, Any]:
        """On the sender: this sync's token and the queue (made once). Nothing elsewhere."""
        if not self.is_master:
            return {}
        if self._queue is None:
            self._queue = Queue(actor_options={"num_cpus": 0})
        return {"queue": self._queue, "token": uuid.uuid4().hex}

    @classmethod
    def build_topology(
        cls, actor_wg_world_size: int, rollout_world_size: int, metadata: list[dict[str, Any]]
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The same channel for every worker; ``metadata[0]`` is actor rank 0's (verl lists actor ranks first)."""
        master = metadata[0]
        if "queue" not in master:
            raise ValueError(
                f"{BACKEND} checkpoint engine: actor rank 0 did not prepare a channel (its engine was built with "
                "is_master=False); verl builds the actor's engine with is_master=(rank == 0), engine_workers.py:686"
            )
        channel = WeightChannel(queue=master["queue"], token=master["token"], num_receivers=rollout_world_size)
        return {"channel": [channel] * actor_wg_world_size}, {"channel": [channel] * rollout_world_size}

    def init_process_group(self, channel: WeightChannel) -> None:
        self._channel = channel

    def finalize(self) -> None:
        self._channel = None
        self._sent = None

    async def send_weights(
        self, weights: Generator[tuple[str, torch.Tensor], None, None], global_steps: int | None = None
    ) -> dict[str, float]:
        """Drain ``weights`` on every actor rank; on rank 0, publish them to every receiver."""
        channel = self._require_channel("send_weights")
        state_dict = {}
        # Every rank must drain the generator: FSDP2's full_tensor() inside it is a collective.
        async for name, tensor in ensure_async_iterator(weights):
            if self.is_master:
                state_dict[name] = tensor.detach()
        if not self.is_master:
            return {}
        # ray.put serialises now, before the next optimizer step can change a tensor that aliases a live parameter.
        self._sent = ray.put(state_dict)
        for _ in range(channel.num_receivers):
            await channel.queue.put_async((channel.token, global_steps, self._sent))
        return {}

    async def receive_weights(
        self, global_steps: int | None = None
    ) -> AsyncGenerator[tuple[str, torch.Tensor], None]:
        """Yield the actor's ``(name, tensor)`` pairs of this sync, in the actor's order."""
        channel = self._require_channel("receive_weights")
        try:
            token, sent_steps, ref = await channel.queue.get_async(timeout=self.timeout_s)
        except Empty:
            raise TimeoutError(
                f"{BACKEND} checkpoint engine: no weights from actor rank 0 within {self.timeout_s} s "
                f"(global_steps={global_steps}); raise checkpoint_engine.engine_kwargs.{BACKEND}.timeout_s if the "
                "actor is slow to gather its weights, or look for the actor's own error"
            ) from None
        if token != channel.token:
            raise RuntimeError(
                f"{BACKEND} checkpoint engine: got weights of another sync (global_steps={sent_steps}) while "
                f"receiving global_steps={global_steps}; an earlier sync left weights behind after it failed"
            )
        state_dict = await ref
        for name, tensor in state_dict.items():
            yield name, tensor

    def _require_channel(self, method: str) -> WeightChannel:
        if self._channel is None:
            raise RuntimeError(
                f"{BACKEND} checkpoint engine: {method} before init_process_group; CheckpointEngineManager calls "
                "prepare, build_topology and init_process_group first (verl/checkpoint_engine/base.py:422)"
            )
        return self._channel


def register_checkpoint_engine() -> None:
    """Register the engine as ``object_store``; idempotent, and refuses to shadow another class of that name."""
    try:
        current = CheckpointEngineRegistry.get(BACKEND)
    except ValueError:  # not registered yet
        current = ObjectStoreCheckpointEngine
    if current is not ObjectStoreCheckpointEngine:
        raise RuntimeError(
            f"verl already maps checkpoint engine {BACKEND!r} to {current!r}; rlrt-recipe's would shadow it"
        )
    CheckpointEngineRegistry.register(BACKEND)(ObjectStoreCheckpointEngine)


register_checkpoint_engine()
