"""Idempotent registration with verl's registries.

verl's ``register_adv_est`` raises when a name is registered twice with different function objects, which
is what a second import of a plug-in module produces (a retried import after a failure, or the same module
reached through two names). A function already registered under the same qualified name is kept; a
different function under our name is still verl's error.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from rlrt_recipe.config import DISTILL_LOSS_MODE, ESTIMATOR_FORMS, TOPK_LOSS_MODES


def register_once(
    registry: MutableMapping[str, Any], register: Callable[[str], Callable], name: str
) -> Callable[[Callable], Callable]:
    """Decorator: ``register(name)(fn)`` unless ``registry[name]`` is already this function (same qualname)."""

    def decorator(fn: Callable) -> Callable:
        existing = registry.get(name)
        if existing is not None and _qualified_name(existing) == _qualified_name(fn):
            return existing
        return register(name)(fn)

    return decorator


def _qualified_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"


#: What a verl process must hold after ``import verl`` for the rlrt_sync trainer's workers to run.
EXPECTED_ESTIMATORS = tuple(ESTIMATOR_FORMS)
EXPECTED_POLICY_LOSSES = (DISTILL_LOSS_MODE, *TOPK_LOSS_MODES)


def missing_registrations() -> list[str]:
    """Our names that verl's registries lack in this process after ``import verl`` (empty when all is well).

    Kept in this light module so that a Ray task can run it without importing the plug-in itself first.
    """
    import verl  # noqa: F401 — loads the plug-in the way every verl process does
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY

    return [f"advantage estimator '{n}'" for n in EXPECTED_ESTIMATORS if n not in ADV_ESTIMATOR_REGISTRY] + [
        f"policy loss '{n}'" for n in EXPECTED_POLICY_LOSSES if n not in POLICY_LOSS_REGISTRY
    ]
