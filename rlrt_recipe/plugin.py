"""What verl's ``verl.plugins`` entry point imports, in the driver, the trainer and every Ray worker.

verl swallows plug-in import errors at debug level (``verl/__init__.py``), so this module never raises:
each piece is registered on its own, a failure is logged as a WARNING with its cause, and whatever needs
the missing piece fails later with a message naming it (``require_registrations``). One INFO line says
what loaded. Order matters: with ``VERL_PLATFORM=cpu`` the CPU backend must register its platform (and
its process-group fix) before anything imports ``verl.workers`` (CPU_BACKEND.md, "import order").
"""

from __future__ import annotations

import importlib
import logging
import os

logger = logging.getLogger("rlrt_recipe")
logger.setLevel(os.getenv("RLRT_LOGGING_LEVEL", "INFO"))

# (label, module) in import order; each module registers its names with verl when imported.
_PIECES: list[tuple[str, str]] = [
    ("estimators", "rlrt_recipe.integration.estimators"),
    ("policy loss", "rlrt_recipe.integration.loss"),
    ("trainer", "rlrt_recipe.integration.trainer"),
]
_CPU_BACKEND = ("cpu backend", "rlrt_recipe.cpu")

#: label -> error text for every piece that failed to load in this process.
LOAD_ERRORS: dict[str, str] = {}


def _wanted_pieces() -> list[tuple[str, str]]:
    on_cpu = os.getenv("VERL_PLATFORM", "").strip().lower() == "cpu"
    return ([_CPU_BACKEND] if on_cpu else []) + _PIECES


def _load() -> list[str]:
    loaded = []
    for label, module in _wanted_pieces():
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 — verl would swallow it silently; we log it instead
            LOAD_ERRORS[label] = f"{type(err).__name__}: {err}"
            logger.warning("rlrt-recipe: could not load %s (%s): %s", label, module, LOAD_ERRORS[label])
        else:
            loaded.append(label)
    return loaded


def require_registrations() -> None:
    """Raise if any piece of the plug-in failed to load in this process, naming it and its cause."""
    if LOAD_ERRORS:
        details = "; ".join(f"{label}: {err}" for label, err in LOAD_ERRORS.items())
        raise RuntimeError(
            f"rlrt-recipe plug-in is incomplete in this process ({details}). Check that rlrt-recipe is "
            "installed in every Ray worker's environment, or set VERL_USE_EXTERNAL_MODULES=rlrt_recipe.plugin."
        )


logger.info("rlrt-recipe plug-in loaded: %s", ", ".join(_load()) or "nothing")
