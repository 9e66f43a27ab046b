"""The live progress bar as one line laid out for the terminal's width.

The essentials (rows done of rows to do, ok / refused / failed / invalid, spend, ETA) come
first and always fit 80 columns, in short words if need be; then, while there is room, the
bar, the requests in flight and retrying, the rate, the projected spend and the elapsed time.
A line wider than the terminal would wrap or be cut by the terminal, losing the essentials.
"""

from __future__ import annotations

from typing import Any

from pipeline.commands.figures import duration

BAR_MIN = 10  # a narrower bar says nothing
BAR_MAX = 40
PREFIX = "nanobatch "


def bar_line(status: dict[str, Any], width: int, elapsed_s: float) -> str:
    """One line of at most ``width`` characters from a ``status.json`` snapshot."""
    line = _essentials(status, short=False)
    if len(line) > width:
        line = _essentials(status, short=True)
    for extra in _extras(status, elapsed_s):
        if len(line) + 3 + len(extra) + 1 + BAR_MIN <= width:
            line += " | " + extra
    room = width - len(line) - 1
    if room >= BAR_MIN:
        prefix = PREFIX if room >= BAR_MIN + len(PREFIX) else ""
        bar = _bar(status["done"], status["to_do"], min(BAR_MAX, room - len(prefix)))
        line = f"{prefix}{bar} {line}"
    return line[:width]


def _essentials(status: dict[str, Any], *, short: bool) -> str:
    counts = status["counts"]
    names = ("ok", "ref", "fail", "inv") if short else ("ok", "refused", "failed", "invalid")
    shown = [(counts["succeeded"], names[0]), (counts["refused"], names[1]),
             (counts["failed"], names[2])]  # fmt: skip
    if counts.get("invalid"):
        shown.append((counts["invalid"], names[3]))
    sep = " " if short else ", "
    parts = [
        f"{status['done']}/{status['to_do']}",
        sep.join(f"{n} {name}" for n, name in shown),
        f"${status['spend_usd']:.2f}",
        f"ETA {duration(status['eta_s'])}",
    ]
    return (" " if short else " | ").join(parts)


def _extras(status: dict[str, Any], elapsed_s: float) -> list[str]:
    return [
        f"{status['in_flight']} in flight, {status['retrying']} retrying",
        f"{status['rows_per_min']:.0f}/min",
        f"projected ${status['projected_usd']:.2f}",
        f"elapsed {duration(elapsed_s)}",
    ]


def _bar(done: int, total: int, width: int) -> str:
    filled = round(width * done / total) if total else 0
    return "━" * filled + "─" * (width - filled)
