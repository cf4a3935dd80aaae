"""Our three trainer modes (rlrt_sync, rlrt_colocate_async, rlrt_separate_async): each is verl's trainer of that mode,
reads verl's own config section for it, and runs the teacher step where s is computed (inside separate_async's π_old
window). Built from the composed CPU recipe without Ray; the loops themselves run in tests/test_e2e_async.py."""

from __future__ import annotations

import hashlib
import inspect
import os

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.trainer.ppo.v1.trainer_base import get_trainer_cls
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from rlrt_recipe.integration.trainer import (
    TRAINER_MODES,
    RlrtColocateAsyncTrainer,
    RlrtSeparateAsyncTrainer,
    RlrtSyncTrainer,
)
from rlrt_recipe.integration.worker import RlrtActorRolloutRefWorker, RlrtDetachActorWorker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sha256 of inspect.getsource(PPOTrainerSeparateAsync._compute_old_log_prob), verl 0.9.1
# (trainer_separate_async.py:187-211), which RlrtSeparateAsyncTrainer._compute_old_log_prob mirrors.
VERL_SEPARATE_OLD_LOG_PROB_SHA256 = "eff91c009b2767d2609ecc1b7121489d9ea4ec9482de71c9f3431f1afa4f6c4c"
VERL_CLASSES = {"rlrt_sync": ("sync", PPOTrainerSync), "rlrt_colocate_async": ("colocate_async", PPOTrainerColocateAsync),
                "rlrt_separate_async": ("separate_async", PPOTrainerSeparateAsync)}
# separate_async's own asserts (trainer_separate_async.py:54-71): train batch = parameter_sync_step × mini-batch,
# a rollout pool of its own, a checkpoint engine other than naive.
SEPARATE = ["trainer.v1.separate_async.parameter_sync_step=2", "data.train_batch_size=4",
            "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.rollout.nnodes=1",
            "actor_rollout_ref.rollout.n_gpus_per_node=1", "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl"]


def trainer(mode: str, tiny_model_dir: str, *overrides: str):
    with initialize_config_dir(config_dir=os.path.join(ROOT, "recipes"), version_base=None):
        cfg = compose(config_name="cpu_demo", overrides=[
            "+env=cpu", f"actor_rollout_ref.model.path={tiny_model_dir}", "algorithm.adv_estimator=rlrt",
            f"trainer.v1.trainer_mode={mode}", *overrides,
        ])
    return get_trainer_cls(mode)(cfg), cfg


def test_each_mode_is_verls_trainer_of_that_mode():
    assert set(TRAINER_MODES) == set(VERL_CLASSES)
    for mode, (verl_mode, verl_class) in VERL_CLASSES.items():
        cls = get_trainer_cls(mode)
        assert issubclass(cls, verl_class) and cls.VERL_MODE == verl_mode
    assert RlrtSyncTrainer.WORKER_CLASS is RlrtColocateAsyncTrainer.WORKER_CLASS is RlrtActorRolloutRefWorker
    assert RlrtSeparateAsyncTrainer.WORKER_CLASS is RlrtDetachActorWorker
    for method in ("sync_teacher_from_actor", "compute_teacher_topk", "save_model_to_cpu", "restore_model_from_cpu"):
        assert callable(getattr(RlrtDetachActorWorker, method)), method


@pytest.mark.parametrize("mode,overrides", [
    ("rlrt_sync", []),
    ("rlrt_colocate_async", ["trainer.v1.colocate_async.num_warmup_batches=2"]),
    ("rlrt_separate_async", SEPARATE),
], ids=["sync", "colocate_async", "separate_async"])
def test_each_mode_reads_verls_section_of_its_mode(tiny_model_dir, mode, overrides):
    """verl reads trainer.v1.<trainer_mode> (parameter_sync_step, the replay buffer's trainer_config) and compares the
    mode with "sync": under our names it would read nothing and pick the async buffer for rlrt_sync. Each of our
    trainers runs as verl's mode: its buffer class, its section, and separate_async's parameter_sync_step (2 here,
    not verl's default 4 nor the 1 of a missing section)."""
    built, cfg = trainer(mode, tiny_model_dir, *overrides)
    verl_mode = VERL_CLASSES[mode][0]
    assert built.trainer_mode == verl_mode
    section = cfg.trainer.v1.get(verl_mode, {})
    assert built.parameter_sync_step == section.get("parameter_sync_step", 1)
    assert built.parameter_sync_step == (2 if verl_mode == "separate_async" else 1)
    assert type(built.replay_buffer) is (ReplayBuffer if verl_mode == "sync" else ReplayBufferAsync)
    if verl_mode == "colocate_async":
        assert built.replay_buffer.trainer_config.num_warmup_batches == 2


def test_separate_async_mirror_is_verls_version():
    """Fails when verl changes PPOTrainerSeparateAsync._compute_old_log_prob, which RlrtSeparateAsyncTrainer mirrors
    with verl's pass replaced by s and the teacher step (both inside the π_old window)."""
    source = inspect.getsource(PPOTrainerSeparateAsync._compute_old_log_prob)
    lines, start = inspect.getsourcelines(PPOTrainerSeparateAsync._compute_old_log_prob)
    assert hashlib.sha256(source.encode()).hexdigest() == VERL_SEPARATE_OLD_LOG_PROB_SHA256, (
        "verl's PPOTrainerSeparateAsync._compute_old_log_prob changed: re-sync RlrtSeparateAsyncTrainer."
        f"_compute_old_log_prob in rlrt_recipe/integration/trainer.py ({inspect.getsourcefile(PPOTrainerSeparateAsync)}"
        f":{start}-{start + len(lines) - 1})"
    )


class RecordingWorkers:
    """The π_old calls the mirror makes on the actor worker group, in order."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


@pytest.mark.parametrize("trigger", [0, 1, 3])
def test_separate_async_runs_s_and_the_teacher_inside_the_pi_old_window(trigger):
    """At local_trigger_step 0 the current weights are π_old (saved as 0); at k ≥ 1 the current weights are saved as
    k, π_old restored, s and the teacher pass run, then the current weights come back: the teacher sees π_old's
    weights exactly when s does, never the current ones."""
    calls = []
    built = object.__new__(RlrtSeparateAsyncTrainer)
    built.actor_rollout_wg = RecordingWorkers(calls)
    built.local_trigger_step = trigger
    built._old_log_prob_and_teacher = lambda batch, metrics: calls.append(("s and teacher",)) or batch
    built.config = OmegaConf.create({"algorithm": {}})  # no rollout correction: verl's decoupled path
    assert built._compute_old_log_prob("batch", {}) == "batch"
    if trigger == 0:
        assert calls == [("save_model_to_cpu", 0), ("s and teacher",)]
    else:
        assert calls == [("save_model_to_cpu", trigger), ("restore_model_from_cpu", 0), ("s and teacher",),
                         ("restore_model_from_cpu", trigger), ("clear_cpu_model", trigger)]
