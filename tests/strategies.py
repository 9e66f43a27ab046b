"""Hypothesis strategies the classifier tests share: arbitrary JSON woven from a protocol's own
field names, and objects with any subset of the real fields (the real shapes, odd values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st


def json_values(leaves: st.SearchStrategy[Any], names: Sequence[str]) -> st.SearchStrategy[Any]:
    """Nested lists and objects of ``leaves``, keyed mostly by the protocol's field ``names``."""
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from(names) | st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=30,
    )


def some_of(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of the given fields: the real shapes, filled with odd values."""
    return st.fixed_dictionaries({}, optional=fields)
