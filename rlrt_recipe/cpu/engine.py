"""verl's stock FSDP engine, registered for device ``cpu`` with the ``fsdp2`` strategy only.

verl registers ``FSDPEngineWithLMHead`` for ``cuda`` and ``npu`` only
(``verl/workers/engine/fsdp/transformer_impl.py:1143``); the engine itself runs on CPU with FSDP2.
FSDP1 cannot (torch: "The module has CPU parameters or buffers when sync_module_states=True"), so
``fsdp`` stays unregistered on CPU and verl answers ``No engine registered for device='cpu' ...
backend='fsdp'``: set ``strategy: fsdp2`` as ``recipes/env/cpu.yaml`` does.
"""

from __future__ import annotations

from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

MODEL_TYPE = "language_model"
BACKEND = "fsdp2"


def register_engine() -> None:
    """Register the FSDP engine for ``cpu``; EngineRegistry asserts on duplicates, so register once."""
    if "cpu" not in EngineRegistry._engines.get(MODEL_TYPE, {}).get(BACKEND, {}):
        EngineRegistry.register(model_type=MODEL_TYPE, backend=BACKEND, device="cpu")(FSDPEngineWithLMHead)
