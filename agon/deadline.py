"""Waiting for something, with a deadline: the one polling loop agon uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout_s: float, every_s: float = 0.1) -> T | None:
    """Call ``check`` until it returns something truthy, and return that.

    Returns None once ``timeout_s`` has passed without success (``check`` is
    called one last time at the deadline). ``check`` may raise to give up early.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(every_s, left))
