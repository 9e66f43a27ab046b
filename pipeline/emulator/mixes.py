"""Manifest rows that exercise the emulator's trigger tokens in a fixed mix, for checks that
run a catalogue-like job through it (``scripts/batch_check.py``, the batch tests): plain
prompts, refusals (``#block``, ``#unsafe``), an error that happens once (``#503x1``), and edits
of a photo, one row in ten of each kind but plain ones and edits (two in ten)."""

from __future__ import annotations

from pathlib import Path


def fault_mix_rows(n: int, photo: Path, *, digits: int = 3) -> list[dict[str, str]]:
    """``n`` rows (``id``, ``prompt``, ``images``) with ids ``r000``... (``digits`` wide)."""
    rows: list[dict[str, str]] = []
    for i in range(n):
        prompt, images = f"a teapot, angle {i}", ""
        match i % 10:
            case 1:
                prompt += " #block"
            case 2:
                prompt += " #unsafe"
            case 3:
                prompt += " #503x1"
            case 4 | 5:
                prompt, images = f"make it blue, take {i}", str(photo)
        rows.append({"id": f"r{i:0{digits}d}", "prompt": prompt, "images": images})
    return rows
