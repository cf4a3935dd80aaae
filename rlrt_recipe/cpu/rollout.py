"""The ``hf`` rollout: verl's rollout seams (adapter, replica) around ``HFRolloutServer``.

* ``HFRolloutAdapter`` (a ``BaseRollout``) lives in each actor rank. The sync trainer's default
  ``checkpoint_engine.backend=naive`` calls its ``update_weights`` in-process after init and after every
  update (``verl/workers/engine_workers.py:728-830``); it pushes the actor's full weights to its server.
* ``HFReplica`` (a ``RolloutReplica``, registered as ``hf`` with ``RolloutReplicaRegistry``) starts one
  server actor per replica; verl's load balancer routes ``generate`` calls to it. The actor is threaded, so the
  async trainers' ``abort_all_requests`` reaches it while a ``generate`` runs (``server.py``, partial rollouts).
* Workaround 2 of 3: verl resolves the adapter class from a private dict with no register function
  (``verl/workers/rollout/base.py:89``, read by ``get_rollout_class`` at L96); we add one entry to it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable

import ray
import torch
import verl.workers.rollout.base as verl_rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry
from verl.workers.rollout.utils import ensure_async_iterator

from rlrt_recipe.cpu.server import CONCURRENCY_GROUPS, HFRolloutServer

ROLLOUT_NAME = "hf"
ADAPTER_KEY = (ROLLOUT_NAME, "async")
ADAPTER_FQN = "rlrt_recipe.cpu.rollout.HFRolloutAdapter"

# The server needs only this CPU backend. Loading verl's plug-ins there would re-enter
# rlrt_recipe.cpu while Ray is still importing it (to unpickle HFRolloutServer), before the cpu platform
# is registered, and every plug-in piece that imports verl.workers would fail with "Unknown platform".
_SERVER_ENV = {"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": ""}
# Threads for generate calls. The server generates one request at a time, so a few threads keep the next request
# ready; further calls wait in Ray's queue and meet the same gate when they start (parked while paused).
GENERATE_THREADS = 4


def server_name(replica_rank: int) -> str:
    """Ray actor name of a replica's server; the adapter finds its server by it."""
    return f"{ROLLOUT_NAME}_server_{replica_rank}"


def _rollout_world_size(config) -> int:
    return config.tensor_model_parallel_size * config.data_parallel_size * config.pipeline_model_parallel_size


class HFRolloutAdapter(BaseRollout):
    """Actor-side handle of the ``hf`` rollout: weights go to the server, memory calls are no-ops."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ["RANK"])
        world_size = _rollout_world_size(self.config)
        self.replica_rank = rank // world_size if replica_rank == -1 else replica_rank
        self.is_replica_leader = rank % world_size == 0
        self._server = None

    async def resume(self, tags: list[str]):
        """Weights and activations live in host memory: nothing to bring back."""

    async def release(self):
        """Nothing to free: the server keeps no KV cache between requests."""

    async def update_weights(
        self,
        weights: Iterable[tuple[str, torch.Tensor]] | AsyncIterable[tuple[str, torch.Tensor]],
        wire_format: str = "named_tensors",
        global_steps: int | None = None,
        **kwargs,
    ):
        """Send the actor's full weights to this replica's server (from the replica's first rank)."""
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout takes full named tensors, got wire_format={wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("the hf rollout cannot apply LoRA adapters; set actor_rollout_ref.model.lora.merge=True")
        # Every rank must drain the generator: FSDP2's full_tensor() inside it is a collective. A checkpoint engine
        # other than naive (separate_async) hands an async generator, as verl's own adapters read it.
        state_dict = {name: tensor.detach().cpu() async for name, tensor in ensure_async_iterator(weights)}
        if not self.is_replica_leader:
            return
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        await self._server.load_weights.remote(state_dict, global_steps)


def start_server_actor(name: str, model_path: str, **server_kwargs) -> ray.actor.ActorHandle:
    """An ``HFRolloutServer`` actor named ``name``, with no Ray CPU or GPU of its own: ``GENERATE_THREADS``
    threads for ``generate``, the server's control group for its lifecycle calls."""
    return (
        ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(HFRolloutServer)
        .options(name=name, num_cpus=0, max_concurrency=GENERATE_THREADS, runtime_env={"env_vars": _SERVER_ENV})
        .remote(model_path, **server_kwargs)
    )


class HFReplica(RolloutReplica):
    """One ``HFRolloutServer`` per replica, in its own process, with no Ray CPU or GPU of its own."""

    async def launch_servers(self):
        model_path = os.path.expanduser(self.model_config.path)
        if not os.path.isdir(model_path):
            raise FileNotFoundError(
                f"actor_rollout_ref.model.path={self.model_config.path!r} is not a local directory; "
                "the hf rollout loads models from local paths only"
            )
        override_config = self.model_config.get("override_config", {}) or {}
        name = server_name(self.replica_rank) + self.name_suffix
        server = start_server_actor(
            name,
            model_path,
            prompt_length=self.config.prompt_length,
            response_length=self.config.response_length,
            attn_implementation=override_config.get("attn_implementation", "sdpa"),
            seed=self.config.seed,
            trust_remote_code=self.model_config.get("trust_remote_code", False),
        )
        await server.__ray_ready__.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = name  # verl keys its load balancer by address; the actor name is unique


def _load_replica() -> type[RolloutReplica]:
    return HFReplica


def register_rollout() -> None:
    """Register the replica (public registry) and the adapter (private dict, see module docstring)."""
    RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)
    registry = verl_rollout_base._ROLLOUT_REGISTRY
    current = registry.get(ADAPTER_KEY)
    if current not in (None, ADAPTER_FQN):
        raise RuntimeError(f"verl already maps rollout {ADAPTER_KEY} to {current!r}; rlrt-recipe's hf rollout would shadow it")
    registry[ADAPTER_KEY] = ADAPTER_FQN
