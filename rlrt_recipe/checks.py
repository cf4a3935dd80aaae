"""Argument checks shared by the pure modules (no verl import): an error names the key and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_choice(name: str, value: Any, allowed: Sequence[Any], *, nullable: bool = False) -> None:
    """Raise ``ValueError("<name> must be one of <allowed>[ or null], got <value>")`` unless ``value`` is allowed
    (a bool never is: ``True == 1`` must not pass for a direction)."""
    if value is None and nullable:
        return
    if isinstance(value, bool) or value not in allowed:
        shown = ", ".join(map(str, allowed)) + (" or null" if nullable else "")
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
