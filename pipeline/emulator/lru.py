"""A byte-budgeted least-recently-used cache, for the emulator's rendered images and layouts:
an image runs to megabytes, so the budget counts bytes, not entries. ``ByteLru.shared`` gives
every caller in a process the same cache for a name and budget: for values that depend on
nothing but their keys (the apps of a test suite then render each picture once)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import ClassVar


class ByteLru:
    """A byte-budgeted least-recently-used map; thread-safe because renders may run in threads."""

    _shared: ClassVar[dict[tuple[object, int], ByteLru]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls, name: object, budget: int) -> ByteLru:
        """This process's one cache for ``name`` and ``budget``."""
        with cls._shared_lock:
            cache = cls._shared.get((name, budget))
            if cache is None:
                cache = cls._shared[name, budget] = cls(budget)
            return cache

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[object, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: object, value: object, size: int) -> None:
        with self._lock:
            if key in self._items or size > self._budget:
                return
            self._items[key] = (value, size)
            self._used += size
            while self._used > self._budget:
                _, (_, dropped) = self._items.popitem(last=False)
                self._used -= dropped
