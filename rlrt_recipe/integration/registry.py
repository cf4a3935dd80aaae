"""Idempotent registration with verl's registries.

verl's ``register_adv_est`` raises when a name is registered twice with different function objects, which
is what a second import of a plug-in module produces (a retried import after a failure, or the same module
reached through two names). A function already registered under the same qualified name is kept; a
different function under our name is still verl's error.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any


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
