"""Durations as the commands show them: one short, fixed form in every view of a run."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """``0m35s``, ``1h05m``; ``-`` when there is no figure (an ETA before any row finished)."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s"
