"""The CPU backend (rlrt_recipe.cpu): registrations, the two workarounds, and the hf rollout server.

Registry and workaround checks run in fresh subprocesses with VERL_PLATFORM=cpu, because what they guard
is import order: the state of a process that ran ``import verl`` first, like every Ray worker does.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from rlrt_recipe.cpu.server import HFRolloutServer
from rlrt_recipe.testing import TinyModelSpec, build_tiny_model
from rlrt_recipe.testing.forward import response_log_probs

PROMPT = [1, 305, 203, 320, 314, 225, 22, 284, 225, 23, 35, 2, 203, 1, 329, 203]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with VERL_PLATFORM=cpu (plus ``env``); fail with its stderr."""
    full_env = {**os.environ, "VERL_PLATFORM": "cpu", "TOKENIZERS_PARALLELISM": "false", **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stderr[-4000:]}"
    return result


def last_json_line(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fresh_cpu_process() -> dict:
    """What a fresh ``VERL_PLATFORM=cpu`` process sees after ``import verl`` alone, as every Ray worker starts:
    the registries, the engine registry's answer for FSDP1, and verl's process-group call with and without the
    gloo wrapper (one interpreter for all three: each fresh import of verl costs ~10 s)."""
    result = run_python(
        """
        import json
        import torch
        import verl
        from verl.plugin.platform import PlatformRegistry, get_platform
        from verl.workers.engine import EngineRegistry
        from verl.workers.rollout.base import get_rollout_class
        from verl.workers.rollout.replica import RolloutReplicaRegistry
        import verl.workers.engine_workers as engine_workers
        import rlrt_recipe.plugin as plugin
        state = {
            "platform_cls": PlatformRegistry.get("cpu").__qualname__,
            "platform": type(get_platform()).__qualname__,
            "device": get_platform().device_name,
            "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__qualname__,
            "adapter": get_rollout_class("hf", "async").__module__ + "." + get_rollout_class("hf", "async").__qualname__,
            "replica": RolloutReplicaRegistry.get("hf").__qualname__,
            "gloo_wrapped": getattr(engine_workers.initialize_global_process_group_ray, "rlrt_gloo_default", False),
            "cpu_backend_error": plugin.LOAD_ERRORS.get("cpu backend"),
        }
        try:
            EngineRegistry.get_engine_cls("language_model", "fsdp")
            state["fsdp1_error"] = None
        except ValueError as err:
            state["fsdp1_error"] = str(err)
        wrapped = engine_workers.initialize_global_process_group_ray
        try:
            wrapped.__wrapped__(timeout_second=None)
            state["unwrapped_error"] = None
        except ValueError as err:
            state["unwrapped_error"] = str(err)
        wrapped(timeout_second=None)
        state["backend"] = torch.distributed.get_backend()
        torch.distributed.destroy_process_group()
        print(json.dumps(state))
        """,
        RANK="0",
        WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )
    return last_json_line(result)


def test_import_verl_registers_every_cpu_piece(fresh_cpu_process):
    """Guards the import order: `import verl` alone (the plug-in) must leave every registry holding our
    names and engine_workers bound to the gloo wrapper, or Ray workers fail with Unknown platform/NCCL."""
    registries = {k: v for k, v in fresh_cpu_process.items() if k not in ("fsdp1_error", "unwrapped_error", "backend")}
    assert registries == {
        "platform_cls": "PlatformCPU",
        "platform": "PlatformCPU",
        "device": "cpu",
        "engine": "FSDPEngineWithLMHead",
        "adapter": "rlrt_recipe.cpu.rollout.HFRolloutAdapter",
        "replica": "HFReplica",
        "gloo_wrapped": True,
        "cpu_backend_error": None,
    }


def test_cpu_platform_is_inert_without_verl_platform(monkeypatch):
    """On a GPU cluster a CPU-only Ray actor auto-detects platforms: ours must never claim it."""
    from rlrt_recipe.cpu.platform import PlatformCPU

    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    assert PlatformCPU().is_platform_available(use_smi_check=True) is False
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert PlatformCPU().is_platform_available(use_smi_check=True) is True


def test_fsdp1_is_not_registered_on_cpu(fresh_cpu_process):
    """FSDP1 cannot initialise on CPU; asking for it must name the backend, not fail deep in torch."""
    error = fresh_cpu_process["fsdp1_error"]
    assert "No engine registered for device='cpu'" in error and "backend='fsdp'" in error


# --- workaround 1: the gloo default of verl's process-group function ------------------------------------


def test_verl_process_group_line_still_needs_the_gloo_workaround():
    """Fails when verl changes what rlrt_recipe/cpu/process_group.py works around: the default backend
    string (utils/distributed.py:83), the function's arguments, or engine_workers' by-name import/call."""
    import verl.utils.distributed as distributed

    source = inspect.getsource(distributed.initialize_global_process_group_ray)
    assert 'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in source, (
        "verl changed the default backend of initialize_global_process_group_ray: "
        "re-check rlrt_recipe/cpu/process_group.py (maybe the workaround can go)"
    )
    assert list(inspect.signature(distributed.initialize_global_process_group_ray).parameters) == [
        "timeout_second",
        "backend",
    ]
    engine_workers_source = open(inspect.getsourcefile(distributed).replace("utils/distributed.py", "workers/engine_workers.py")).read()
    assert "from verl.utils.distributed import initialize_global_process_group_ray" in engine_workers_source
    assert "initialize_global_process_group_ray(timeout_second=None)" in engine_workers_source


def test_gloo_workaround_initialises_a_process_group_and_verls_default_does_not(fresh_cpu_process):
    """The wrapper makes engine_workers' call work on CPU; the unwrapped default still fails (if it ever
    stops failing, verl fixed it upstream and the workaround should be removed)."""
    assert fresh_cpu_process["backend"] == "gloo"
    error = fresh_cpu_process["unwrapped_error"]
    assert error is not None and "Duplicate device type cpu" in error


# --- workaround 2: the entry in verl's private rollout-adapter dict -------------------------------------


def test_verl_rollout_adapter_lookup_still_uses_the_private_dict():
    """Fails when verl changes base.py:89-107 (the dict or how get_rollout_class reads it), or adds a
    public way to register an adapter, which rlrt_recipe/cpu/rollout.py should then use instead."""
    import verl.workers.rollout.base as base

    assert isinstance(base._ROLLOUT_REGISTRY, dict) and ("vllm", "async") in base._ROLLOUT_REGISTRY
    assert "_ROLLOUT_REGISTRY[(rollout_name, mode)]" in inspect.getsource(base.get_rollout_class)
    public_registration = [name for name in dir(base) if "regist" in name.lower() and not name.startswith("_")]
    assert public_registration == [], f"verl now offers {public_registration}: use it for the hf adapter"
    engine_workers_source = open(inspect.getsourcefile(base).replace("rollout/base.py", "engine_workers.py")).read()
    assert "get_rollout_class(rollout_config.name, rollout_config.mode)" in engine_workers_source


# --- the hf rollout server ------------------------------------------------------------------------------


def test_server_module_does_not_import_the_trainer():
    """Ray unpickles HFRolloutServer in a fresh process where the plug-ins are off (rollout.py _SERVER_ENV);
    importing the V1 trainer there failed in the probe with Unknown platform 'cpu'."""
    result = run_python(
        """
        import json, sys
        import rlrt_recipe.cpu.server
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("verl.trainer"))))
        """,
        VERL_USE_EXTERNAL_PLUGINS="none",
        VERL_USE_EXTERNAL_MODULES="",
    )
    assert [m for m in last_json_line(result) if m.startswith("verl.trainer.ppo")] == []


@pytest.fixture(scope="module")
def server(tiny_model_dir) -> HFRolloutServer:
    return HFRolloutServer(tiny_model_dir, prompt_length=64, response_length=16)


def teacher_forced_log_probs(model_dir: str, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) of each response token from one transformers forward of prompt + response."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return response_log_probs(model, prompt, response, temperature)


def test_greedy_is_deterministic_and_is_the_argmax(server, tiny_model_dir):
    """temperature 0 (verl's validation) must be greedy: repeatable, each token the model's argmax."""
    first = server.generate("a", PROMPT, {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True})
    second = server.generate("b", PROMPT, {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": False})
    assert first.token_ids == second.token_ids
    assert len(first.token_ids) == 16  # a random model does not stop: the full response_length budget
    assert second.log_probs is None
    log_probs = teacher_forced_log_probs(tiny_model_dir, PROMPT, first.token_ids, temperature=1.0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT + first.token_ids])).logits[0, len(PROMPT) - 1 : -1]  # [R, V]
    assert logits.argmax(-1).tolist() == first.token_ids
    torch.testing.assert_close(torch.tensor(first.log_probs), log_probs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_log_probs_match_the_actor_quantity(server, tiny_model_dir, temperature):
    """Per-token log-probs are log_softmax(logits / T) of the sampled token, what verl's actor recomputes
    as old_log_probs (so training/rollout_probs_diff_* measures weight sync, not a definition mismatch)."""
    torch.manual_seed(0)
    output = server.generate("c", PROMPT, {"temperature": temperature, "top_p": 1.0, "top_k": -1, "logprobs": True})
    assert len(output.log_probs) == len(output.token_ids) == 16
    expected = teacher_forced_log_probs(tiny_model_dir, PROMPT, output.token_ids, temperature)
    torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=1e-5, rtol=0)
    assert output.stop_reason == "completed"


def test_max_tokens_in_the_request_wins(server):
    output = server.generate("d", PROMPT, {"temperature": 0, "max_tokens": 5})
    assert len(output.token_ids) == 5


def test_generation_stops_at_the_first_eos(server, tiny_model_dir, tmp_path):
    """EOS cut: declare the 6th sampled token an EOS id and sample again from the same seed; the response
    must end at that token's first occurrence, EOS included, with one log-prob per token."""
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}
    torch.manual_seed(1)
    sampled = server.generate("e", PROMPT, params).token_ids
    eos_id = sampled[5]
    cut = sampled.index(eos_id)  # its first occurrence: where generation must stop
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "eos_model")
    GenerationConfig(eos_token_id=[eos_id], pad_token_id=eos_id).save_pretrained(model_dir)
    eos_server = HFRolloutServer(str(model_dir), prompt_length=64, response_length=16)
    torch.manual_seed(1)
    output = eos_server.generate("f", PROMPT, params)
    assert output.token_ids == sampled[: cut + 1]
    assert len(output.log_probs) == cut + 1


def test_load_weights_switches_the_model(server, tiny_model_dir, tmp_path):
    """The weight push from the actor must really replace the rollout's weights (the naive sync path)."""
    other_dir = build_tiny_model(tmp_path / "other", TinyModelSpec(seed=1))
    other = AutoModelForCausalLM.from_pretrained(other_dir, dtype=torch.float32)
    greedy = {"temperature": 0, "logprobs": True}
    expected = HFRolloutServer(other_dir, prompt_length=64, response_length=16).generate("g", PROMPT, greedy)
    fresh = HFRolloutServer(tiny_model_dir, prompt_length=64, response_length=16)
    before = fresh.generate("h", PROMPT, greedy)
    fresh.load_weights(dict(other.named_parameters()), global_steps=3)
    after = fresh.generate("i", PROMPT, greedy)
    assert not torch.allclose(torch.tensor(before.log_probs), torch.tensor(expected.log_probs), atol=1e-3)
    assert after.token_ids == expected.token_ids
    torch.testing.assert_close(torch.tensor(after.log_probs), torch.tensor(expected.log_probs), atol=1e-6, rtol=0)
    assert after.extra_fields["global_steps"] == 3


def test_load_weights_rejects_a_different_model(server):
    """A push from a different architecture must fail naming the mismatch, not load half a model."""
    wrong = {"model.embed_tokens.weight": torch.zeros(512, 64), "model.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"25 missing .* 1 unknown \(e.g. \['model.extra.weight'\]\)"):
        server.load_weights(wrong)
