"""One manifest row -> a validated ``Job``, or an ``InvalidRow`` naming the field and the fix.

Everything that can be checked without money is checked here: the prompt (or the prompt
template's columns), the model's capabilities (image size, aspect ratio, number of images),
a ``WxH`` size mapped onto what the model makes (with what it becomes and costs), the prompt's
length, sampling settings, source files (see ``rowimages``), output file names (``names``: in
bytes, against the output file system's limit, since a name the disk refuses would be paid for
and then lost).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.models import (
    ModelSpec,
    check_aspect_ratio,
    check_image_size,
    check_model_id,
    check_prompt_length,
    covering_size,
    map_size,
    resolve_model,
    unknown_model,
)
from pipeline.core.prices import PriceTable
from pipeline.core.types import InvalidRow, Job, Tier
from pipeline.plan.names import (
    NAME_MAX_BYTES,
    cell_text,
    fill,
    name_problem,
    output_name,
    template_fields,
)
from pipeline.plan.rowimages import URI_PREFIXES, BadImages, SourceImages

SHOWN_PROMPT_CHARS = 2000  # an invalid row's prompt kept for the report (it may be huge)
KNOWN_COLUMNS = frozenset({
    "id", "prompt", "images", "model", "aspect_ratio", "image_size", "size",
    "system_instruction", "temperature", "seed", "output_name", "tier",
})  # fmt: skip
_WXH = re.compile(r"^\s*(\d{2,5})\s*[xX×*]\s*(\d{2,5})\s*$")


@dataclass(frozen=True, slots=True)
class Defaults:
    """Run-wide settings a row gets when its own columns do not say."""

    model: str
    image_size: str | None
    aspect_ratio: str | None
    prompt_template: str | None = None
    name_template: str | None = None
    fit_images: bool = False
    name_max_bytes: int = NAME_MAX_BYTES  # the output file system's limit on a file name
    tier: Tier = Tier.STANDARD  # --tier
    links: tuple[str, ...] = URI_PREFIXES  # the link schemes the route takes (routes.py)
    model_id_in_body: bool = False  # the route sends the id in the body ("google/...", ":free")
    batch: bool = False  # --mode batch: requests go into Batch API jobs (sources must be files)


@dataclass(frozen=True, slots=True)
class RowWarning:
    row_id: str
    line: int
    field: str
    message: str


class RowResolver:
    """Validates rows and resolves them against the run defaults.

    Source files are inspected once per path: a reference photo shared by thousands of rows
    is stat'ed and sniffed once per run.
    """

    def __init__(
        self,
        base_dir: Path,
        defaults: Defaults,
        max_warnings: int = 1000,
        prices: PriceTable | None = None,
    ) -> None:
        self._defaults = defaults
        self._sources = SourceImages(
            base_dir, fit_images=defaults.fit_images, links=defaults.links, batch=defaults.batch
        )
        self._prices = prices or PriceTable()
        self.warnings: list[RowWarning] = []
        self.warning_count = 0
        self._max_warnings = max_warnings
        self._unknown_models: set[str] = set()  # warned about once each, at the first row

    def _warn(self, row_id: str, line: int, field: str, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < self._max_warnings:
            self.warnings.append(RowWarning(row_id, line, field, message))

    def resolve(self, row_id: str, line: int, row: dict[str, Any]) -> Job | InvalidRow:
        """The row as a job, or why it cannot be sent."""
        try:
            return self._resolve(row_id, line, row)
        except _Invalid as e:
            return InvalidRow(row_id, line, e.field, e.reason, self._shown_prompt(row), _extra(row))

    def _shown_prompt(self, row: dict[str, Any]) -> str:
        """An invalid row's prompt for people to recognise it (the template's, if it fills)."""
        try:
            shown = self._prompt(row)
        except _Invalid:
            shown = cell_text(row.get("prompt")) or ""
        return shown[:SHOWN_PROMPT_CHARS]

    def _resolve(self, row_id: str, line: int, row: dict[str, Any]) -> Job:
        d = self._defaults
        prompt = self._prompt(row)
        column = cell_text(row.get("model"))
        model, spec = resolve_model(column or d.model)
        # On the native routes the id goes into the request's URL path.
        if why := check_model_id(model, in_path=not d.model_id_in_body):
            raise _Invalid("model", why)
        if spec is None and model not in self._unknown_models:
            self._unknown_models.add(model)
            # A warning, not an error: new models appear before the table knows them.
            field, fate = ("model", "its rows fail") if column else ("--model", "the run stops")
            self._warn(row_id, line, field, f"{unknown_model(model)}: sent as written, priced "
                       f"like the dearest model; if the API does not know it, {fate} "
                       "(said once, at its first row)")  # fmt: skip
        size, ratio = self._size_and_ratio(row_id, line, row, spec)
        if spec is not None:
            if size is not None and (why := check_image_size(spec, size)):
                raise _Invalid("image_size", why)
            if ratio is not None and (why := check_aspect_ratio(spec, ratio)):
                raise _Invalid("aspect_ratio", why)
        system = cell_text(row.get("system_instruction"))
        if why := check_prompt_length(spec, model, len(prompt) + len(system or "")):
            raise _Invalid("prompt", why)
        try:
            limit = spec.max_input_images if spec else 14
            warn = functools.partial(self._warn, row_id, line, "images")
            images = self._sources.resolve(row.get("images"), limit, model, warn)
        except BadImages as e:
            raise _Invalid("images", str(e)) from None
        name = output_name(row, d.name_template)
        if name == "":
            raise _Invalid("output_name", "the output name is empty once unsafe characters go")
        if why := name_problem(name or row_id, d.name_max_bytes):
            raise _Invalid("id" if name is None else "output_name", why)
        return Job(
            row_id=row_id,
            line=line,
            prompt=prompt,
            images=images,
            model=model,
            image_size=size,
            aspect_ratio=ratio,
            system_instruction=system,
            temperature=_number(row.get("temperature"), "temperature", 0.0, 2.0),
            seed=_integer(row.get("seed")),
            output_name=name,
            metadata=_extra(row),
            tier=self._tier(row),
        )

    def _tier(self, row: dict[str, Any]) -> Tier:
        text = cell_text(row.get("tier"))
        if text is None:
            return self._defaults.tier
        try:
            return Tier(text.lower())
        except ValueError:
            names = ", ".join(t.value for t in Tier)
            raise _Invalid(
                "tier",
                f"{text!r} is not a service tier: use {names}; or rename the column (e.g. to "
                "customer_tier) if it is a tier of your own",
            ) from None

    def _prompt(self, row: dict[str, Any]) -> str:
        template = self._defaults.prompt_template
        if template:
            empty = [f for f in template_fields(template) if cell_text(row.get(f)) is None]
            if empty:
                raise _Invalid(empty[0], f"the prompt template needs {{{empty[0]}}}, empty here")
            return fill(template, row)
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Invalid("prompt", "the prompt is empty; write what the image should show")
        return prompt

    def _size_and_ratio(
        self, row_id: str, line: int, row: dict[str, Any], spec: ModelSpec | None
    ) -> tuple[str | None, str | None]:
        size = cell_text(row.get("image_size"))
        ratio = cell_text(row.get("aspect_ratio"))
        wxh = cell_text(row.get("size"))
        if wxh is not None:
            match = _WXH.match(wxh)
            if match is None:
                raise _Invalid("size", f"{wxh!r} is not WIDTHxHEIGHT, e.g. 1024x1024")
            if spec is None:
                raise _Invalid("size", "the model is unknown here: give image_size/aspect_ratio")
            width, height = int(match[1]), int(match[2])
            choice = map_size(spec, width, height)
            if size or ratio:
                self._warn(row_id, line, "size", "image_size/aspect_ratio given: size ignored")
            elif choice.pixels != (width, height):
                self._warn(row_id, line, "size", self._size_note(spec, width, height))
            size = size or choice.image_size
            ratio = ratio or choice.aspect_ratio
        return size or self._defaults.image_size, ratio or self._defaults.aspect_ratio

    def _size_note(self, spec: ModelSpec, width: int, height: int) -> str:
        """What a ``WxH`` becomes and costs; if that is smaller than asked, the level that
        would cover it and its price."""
        choice = map_size(spec, width, height)
        made = f"{choice.aspect_ratio}, {self._priced(spec, choice.image_size)}"
        note = f"{width}x{height} -> {choice.label} ({made})"
        if choice.pixels[0] >= width and choice.pixels[1] >= height:
            return note
        cover = covering_size(spec, choice.aspect_ratio, width, height)
        if cover is None:
            return f"{note}, smaller than asked: no image size of {spec.model_id} is that big"
        return (
            f"{note}, smaller than asked: image_size {cover.image_size} makes {cover.label} "
            f"({self._priced(spec, cover.image_size)})"
        )

    def _priced(self, spec: ModelSpec, size: str | None) -> str:
        level = size or spec.default_size
        return f"{level}, ${self._prices.per_image(spec.model_id, level):.3f} per image"


class _Invalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _number(value: object, field: str, low: float, high: float) -> float | None:
    text = cell_text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise _Invalid(field, f"{text!r} is not a number") from None
    if not low <= number <= high:
        raise _Invalid(field, f"{number} is outside {low}..{high}")
    return number


def _integer(value: object) -> int | None:
    try:
        number = _number(value, "seed", -(2**31), 2**31 - 1)
    except _Invalid:
        number = math.nan  # one message for every way a seed is wrong
    if number is None:
        return None
    if not number.is_integer():
        raise _Invalid("seed", f"{cell_text(value)!r} is not a whole number (32-bit)")
    return int(number)


def _extra(row: dict[str, Any]) -> str | None:
    """The row's columns nanobatch does not use, kept in the ledger as a JSON object."""
    extra = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS and v not in (None, "")}
    return json.dumps(extra, default=str, sort_keys=True) if extra else None
