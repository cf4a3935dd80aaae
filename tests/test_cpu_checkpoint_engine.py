"""The CPU pieces verl's ``separate_async`` trainer needs: the ``object_store`` checkpoint engine and π_old snapshots.

The engine is driven the way ``CheckpointEngineManager.update_weights`` drives it (verl/checkpoint_engine/base.py:
510-562): prepare on every worker, actor ranks first; ``build_topology``; ``init_process_group``; send on the actor
ranks and receive on the rollout workers at the same time; finalize. The snapshot test runs verl's own
``DetachActorWorker`` on an FSDP2 model in a fresh ``VERL_PLATFORM=cpu`` interpreter (one gloo rank).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM
from verl.checkpoint_engine import CheckpointEngineRegistry

from rlrt_recipe.cpu.checkpoint_engine import BACKEND, ObjectStoreCheckpointEngine, register_checkpoint_engine

BUCKET_SIZE = 1 << 20


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray instance (never a running cluster), as verl's workers see it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


def manager_sync(senders, receivers, weights_per_sender, global_steps=None):
    """One sync in CheckpointEngineManager's order; returns each receiver's list of (name, tensor)."""
    metadata = [engine.prepare() for engine in senders + receivers]
    actor_kwargs, rollout_kwargs = ObjectStoreCheckpointEngine.build_topology(len(senders), len(receivers), metadata)
    for rank, engine in enumerate(senders):
        engine.init_process_group(**{key: values[rank] for key, values in actor_kwargs.items()})
    for rank, engine in enumerate(receivers):
        engine.init_process_group(**{key: values[rank] for key, values in rollout_kwargs.items()})

    async def receive(engine):
        return [item async for item in engine.receive_weights(global_steps=global_steps)]

    async def run():
        sends = [engine.send_weights(weights, global_steps=global_steps)
                 for engine, weights in zip(senders, weights_per_sender, strict=True)]
        results = await asyncio.gather(*sends, *[receive(engine) for engine in receivers])
        return results[len(senders):]

    received = asyncio.run(run())
    for engine in senders + receivers:
        engine.finalize()
    return received


def assert_bit_equal(received, sent):
    assert [name for name, _ in received] == [name for name, _ in sent]
    for (name, got), (_, want) in zip(received, sent, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert torch.equal(got.contiguous().view(torch.uint8), want.contiguous().view(torch.uint8)), name


def test_engine_is_registered_once():
    """verl finds the engine by ``checkpoint_engine.backend=object_store``; registering again (a second import
    path, a re-imported plug-in) must not raise or swap the class."""
    register_checkpoint_engine()
    assert CheckpointEngineRegistry.get(BACKEND) is ObjectStoreCheckpointEngine


def test_weights_reach_every_receiver_bit_equal(local_ray, tiny_model_dir):
    """A tiny model's weights, sent by actor rank 0 to two rollout workers, arrive with the same names, order,
    dtypes and bytes, in two consecutive syncs (the second must not deliver the first's weights); actor rank 1
    drains its generator (FSDP2's full_tensor() is a collective) and sends nothing."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    senders = [ObjectStoreCheckpointEngine(BUCKET_SIZE, is_master=True), ObjectStoreCheckpointEngine(BUCKET_SIZE)]
    receivers = [ObjectStoreCheckpointEngine(BUCKET_SIZE), ObjectStoreCheckpointEngine(BUCKET_SIZE)]
    drained = []

    def rank1_weights():
        for name, tensor in model.state_dict().items():
            drained.append(name)
            yield name, tensor

    for step in (1, 2):
        sent = [(name, tensor.clone()) for name, tensor in model.state_dict().items()]
        received = manager_sync(senders, receivers, [iter(sent), rank1_weights()], global_steps=step)
        for per_receiver in received:
            assert_bit_equal(per_receiver, sent)
        assert drained == list(model.state_dict()) * step
        with torch.no_grad():  # the optimizer step between two syncs
            for param in model.parameters():
                param.add_(torch.randn_like(param))


def test_bf16_weights_keep_their_dtype(local_ray):
    """Tensors travel as their bytes: a bf16 tensor stays bf16 and bit-equal (no float round trip)."""
    sent = [("w", torch.randn(3, 5).to(torch.bfloat16)), ("b", torch.arange(4, dtype=torch.int64))]
    received = manager_sync([ObjectStoreCheckpointEngine(BUCKET_SIZE, is_master=True)],
                            [ObjectStoreCheckpointEngine(BUCKET_SIZE)], [iter(sent)])
    assert_bit_equal(received[0], sent)


def test_receiver_without_a_sender_times_out_with_the_key_to_raise(local_ray):
    """A rollout worker must not wait forever when the actor never sends (its error is elsewhere)."""
    sender = ObjectStoreCheckpointEngine(BUCKET_SIZE, is_master=True)
    receiver = ObjectStoreCheckpointEngine(BUCKET_SIZE, timeout_s=0.5)
    _, rollout_kwargs = ObjectStoreCheckpointEngine.build_topology(1, 1, [sender.prepare(), receiver.prepare()])
    receiver.init_process_group(channel=rollout_kwargs["channel"][0])

    async def receive():
        return [item async for item in receiver.receive_weights(global_steps=3)]

    with pytest.raises(TimeoutError, match=f"checkpoint_engine.engine_kwargs.{BACKEND}.timeout_s"):
        asyncio.run(receive())


def test_build_topology_needs_actor_rank_0_first():
    """verl lists the actor ranks' metadata first; a sender built without is_master must be named, not hang."""
    with pytest.raises(ValueError, match="is_master"):
        ObjectStoreCheckpointEngine.build_topology(1, 1, [{}, {}])


# --- π_old snapshots of separate_async (DetachActorWorker.save_model_to_cpu) on CPU --------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SNAPSHOT_SCRIPT = """
import json, sys
from types import SimpleNamespace
import torch
import verl  # loads the plug-in (CPU platform, gloo default), as in every Ray worker
from omegaconf import OmegaConf
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM
from verl.experimental.separation.engine_workers import DetachActorWorker
from verl.utils.distributed import initialize_global_process_group_ray
from rlrt_recipe.integration.snapshot import shares_storage
from rlrt_recipe.integration.worker import RlrtDetachActorWorker

initialize_global_process_group_ray()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
fully_shard(model, mesh=init_device_mesh("cpu", (1,)))


def pi_old_cycle(worker_cls):
    # trainer_separate_async.py:202-210: save π_old at mini-batch 0, update, then swap π_old in for mini-batch 1
    worker = worker_cls.__new__(worker_cls)  # the methods need only these three attributes
    worker.config = OmegaConf.create({"actor": {"strategy": "fsdp2"}})
    worker.actor = SimpleNamespace(engine=SimpleNamespace(module=model))
    worker._strategy_handlers = None
    worker.save_model_to_cpu(0)
    shared = [shares_storage(saved, param._local_tensor)
              for (saved, _), param in zip(worker.cpu_saved_models[0][0].values(), model.parameters())]
    pi_old = {name: param.full_tensor().clone() for name, param in model.named_parameters()}
    with torch.no_grad():  # the optimizer's in-place step
        for param in model.parameters():
            param.add_(1.0)
    worker.save_model_to_cpu(1)
    worker.restore_model_from_cpu(0)
    restored_is_pi_old = all(torch.equal(param.full_tensor(), pi_old[name]) for name, param in model.named_parameters())
    worker.restore_model_from_cpu(1)
    worker.clear_cpu_model(1)
    return {"all_shared": all(shared), "any_shared": any(shared), "restored_is_pi_old": restored_is_pi_old}


print(json.dumps({"verl": pi_old_cycle(DetachActorWorker), "copying": pi_old_cycle(RlrtDetachActorWorker)}))
"""


@pytest.fixture(scope="module")
def snapshot_cycle(tiny_model_dir) -> dict:
    env = {**os.environ, "VERL_PLATFORM": "cpu", "TOKENIZERS_PARALLELISM": "false", "RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SNAPSHOT_SCRIPT), tiny_model_dir], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"subprocess failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_verl_pi_old_snapshot_aliases_live_weights_on_cpu(snapshot_cycle):
    """Documents the verl 0.9.1 behaviour SnapshotCopyMixin fixes: fsdp2_sharded_save_to_cpu's ``.cpu()`` of a CPU
    shard is the shard itself, so π_old follows the optimizer and restore_model_from_cpu(0) brings back the current
    weights. Fails (and the mixin can go) once verl copies."""
    assert snapshot_cycle["verl"] == {"all_shared": True, "any_shared": True, "restored_is_pi_old": False}


def test_copying_snapshot_restores_pi_old(snapshot_cycle):
    """With our separate_async worker (SnapshotCopyMixin) the snapshot shares no storage with the live shards and
    restore brings back π_old exactly."""
    assert snapshot_cycle["copying"] == {"all_shared": False, "any_shared": False, "restored_is_pi_old": True}
