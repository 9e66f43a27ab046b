"""How a manifest's rows get their ids: the frozen scheme a run settles and a folder keeps.

A value only, so the run configuration can carry it; choosing a scheme for a manifest,
comparing two (column names match by their normalised spelling) and reading or writing a
folder's ``ids.json`` are ``plan/rowids.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class IdScheme:
    """How a manifest's rows get their ids."""

    column: str | None = None  # the column whose text is the id (header as written)
    derived: str = "v2"  # with no column: "v2", or "v1" for folders made before v2

    def describe(self) -> str:
        if self.column is not None:
            return f"column {self.column!r}"
        if self.derived == "v1":
            return "derived from each row's prompt and settings (the older way)"
        return "derived from each row's values"

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "column": self.column, "derived": self.derived}
