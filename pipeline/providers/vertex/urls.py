"""Where a Vertex AI request goes: the host by location, the path by project, location and
version, or express mode's path without a project.

| location                      | host                                      |
|-------------------------------|-------------------------------------------|
| ``global``, express mode      | ``https://aiplatform.googleapis.com``     |
| multi-region ``us``, ``eu``   | ``https://aiplatform.{loc}.rep.googleapis.com`` |
| regional, e.g. ``us-central1`` | ``https://{loc}-aiplatform.googleapis.com`` |

``--base-url`` replaces the host (a gateway, the emulator); the path stays Vertex's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from pipeline.core.errors import UsageError

GLOBAL = "global"
MULTI_REGIONS = frozenset({"us", "eu"})
# Locations and projects go into a host name and a path: only their own alphabets pass.
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,99}")


def check_location(location: str) -> str:
    return _checked(
        _LOCATION,
        location,
        f"--location {location!r} is not a Vertex AI location: use global, a multi-region "
        "(us, eu) or a region such as us-central1",
    )


def check_project(project: str) -> str:
    return _checked(
        _PROJECT,
        project,
        f"--project {project!r} is not a Google Cloud project id (letters, digits, '-'): "
        "see `gcloud projects list`",
    )


def _checked(alphabet: re.Pattern[str], value: str, problem: str) -> str:
    """``value`` if it is all of ``alphabet``; else ``UsageError(problem)``."""
    if not alphabet.fullmatch(value):
        raise UsageError(problem)
    return value


def host(location: str) -> str:
    """Vertex's host for ``location`` (express mode: ``global``)."""
    if location == GLOBAL:
        return "https://aiplatform.googleapis.com"
    if location in MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


@dataclass(frozen=True, slots=True)
class VertexRoute:
    """One Vertex address: a project's location, or express mode (an API key, no project).

    ``project`` None on a project route means "the one the credentials name", settled by the
    route check before anything is sent; a URL built before then says ``projects/-``.
    """

    location: str = GLOBAL
    project: str | None = None
    express: bool = False
    base_url: str | None = None  # --base-url: replaces the host

    def model_url(self, model: str, version: str) -> str:
        """The model's resource: a GET reads its metadata (unbilled)."""
        location = GLOBAL if self.express else self.location
        base = (self.base_url or host(location)).rstrip("/")
        # Ids were checked against a strict pattern; quoting means none reaches another path.
        name = f"publishers/google/models/{quote(model, safe='')}"
        if not self.express:
            project = quote(self.project, safe="") if self.project else "-"
            name = f"projects/{project}/locations/{location}/{name}"
        return f"{base}/{version}/{name}"

    def generate_url(self, model: str, version: str) -> str:
        return f"{self.model_url(model, version)}:generateContent"

    def describe(self) -> str:
        """For messages: ``project P at L`` or ``express mode``."""
        if self.express:
            return "express mode"
        return f"project {self.project or '(from the credentials)'} at {self.location}"
