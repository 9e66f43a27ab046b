"""What the ledger's fingerprints were last checked against, so a resume can trust them.

A done row's fingerprint is a pure function of the manifest's content, the run's options and
the bytes of its source images. When all three are what they were at the end of the last run
that planned the whole manifest, no done row can have changed: the resume skips checking them
one by one (which for a million rows costs seconds of Python). Any difference, or no state,
and every done row is checked. The manifest is compared by content hash, not by mtime.

The folder also records the name template its files follow, so a run can say when a changed
template leaves finished rows under their old names.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from pipeline.core.config import RunConfig
from pipeline.plan.sources import SourceCache
from pipeline.store.storage import write_atomic

STATE_FILE = "plan.state.json"
STATE_VERSION = 1


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


def inputs(config: RunConfig) -> dict[str, Any]:
    """The run's identity as far as fingerprints go."""
    return {
        "version": STATE_VERSION,
        "manifest": str(config.manifest.resolve()),
        "manifest_digest": file_digest(config.manifest),
        "model": config.model,
        "image_size": config.image_size,
        "aspect_ratio": config.aspect_ratio,
        "prompt_template": config.prompt_template,
        # Which rows the file's rows are: another sheet, or ids read another way, is another
        # manifest even when the file's bytes are the same.
        "sheet": config.sheet,
        "ids": config.ids.to_json() if config.ids is not None else None,
    }


def trusted(out_dir: Path, current: dict[str, Any], sources: SourceCache) -> bool:
    """Whether the done rows' fingerprints still hold without checking each row."""
    try:
        state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("inputs") != current:
        return False
    recorded = state.get("sources")
    if not isinstance(recorded, dict):
        return False
    return all(sources.digest(path) == digest for path, digest in recorded.items())


def save(
    out_dir: Path, current: dict[str, Any], source_paths: set[str], sources: SourceCache
) -> None:
    """Record that every done row was checked against these inputs."""
    state = {
        "inputs": current,
        "sources": {path: sources.digest(path) for path in sorted(source_paths)},
    }
    write_atomic(out_dir / STATE_FILE, json.dumps(state, indent=1).encode())


def forget(out_dir: Path) -> None:
    """The ledger is about to hold rows checked against other inputs: trust nothing."""
    (out_dir / STATE_FILE).unlink(missing_ok=True)


NAMES_FILE = "names.json"


def recorded_name_template(out_dir: Path) -> tuple[str | None] | None:
    """The name template the folder's files follow (a 1-tuple: it may be None, no template);
    None when the folder has no record of one."""
    try:
        recorded = json.loads((out_dir / NAMES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or "name_template" not in recorded:
        return None
    old = recorded["name_template"]
    return (old if isinstance(old, str) else None,)


def name_template_change(out_dir: Path, template: str | None) -> tuple[str | None] | None:
    """The name template this folder's earlier runs used, when it differs from ``template``
    (see ``recorded_name_template``); None when unchanged or never recorded. Records
    ``template`` as the folder's current one."""
    recorded = recorded_name_template(out_dir)
    if recorded == (template,):
        return None
    write_atomic(out_dir / NAMES_FILE, json.dumps({"name_template": template}).encode())
    return recorded


def name_change_note(config: RunConfig, done: int) -> str | None:
    """At a run's start: if the folder's name template changed and it has finished rows, what
    that means and how to rename them (a run itself renames nothing)."""
    change = name_template_change(config.out_dir, config.name_template)
    if change is None or not done:
        return None
    again = f" --name-template {shlex.quote(config.name_template)}" if config.name_template else ""
    return (
        f"--name-template changed from {change[0]!r} to {config.name_template!r}: {done} "
        "finished rows keep their old file names, only rows made from now on get the new ones. "
        f"To rename the finished ones (nothing is sent): nanobatch rename "
        f"{shlex.quote(str(config.manifest))} --out {shlex.quote(str(config.out_dir))}{again}"
    )
