"""The run keeps freed heap memory for reuse (``core.heap``), unless the user tuned the heap."""

from __future__ import annotations

import platform
import sys

import pytest

from pipeline.core import heap

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's thresholds are glibc's",
)


@glibc
def test_the_heap_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert heap.keep_freed_memory()


@pytest.mark.parametrize(
    "setting", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"]
)
def test_a_users_own_heap_settings_win(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setenv(setting, "131072" if setting != "GLIBC_TUNABLES" else "glibc.malloc.x=1")
    assert not heap.keep_freed_memory()
