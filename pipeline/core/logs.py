"""Logging setup: a human console and, per output directory, ``run.log`` as JSON lines.

Every event passes a redaction step first, so a key can never reach a console or a file even
if some message were to carry it (none should: this is the safety net, not the mechanism).

The console can vanish while a run goes on: a closed terminal or a dropped ssh session (a
hang-up: writes to the terminal fail with EIO) or a closed pipe (EPIPE). ``TERMINAL`` is the
console's state: once it is gone, nothing is written to it again and ``run.log`` alone
carries on.

structlog is imported by ``setup`` and the code paths that log, not at import: the CLI imports
this module for ``TERMINAL``, and ``nanobatch --help`` should not pay for a logging library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

REDACTED = "[redacted]"
RUN_LOG = "run.log"


_PLAIN = frozenset({int, float, bool, type(None)})  # what can hold no secret, by exact type


class Redact:
    """Replace secrets anywhere in an event's values."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s for s in secrets if len(s) >= 6]  # a short value is no secret

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        if self.secrets:
            for key, value in event.items():
                if type(value) not in _PLAIN:  # most of a row's event: counts, ids, floats
                    event[key] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if value is None or isinstance(value, int | float):  # bool is an int
            return value
        # Anything else (an exception, a URL) is printed as its str by run.log and its repr by
        # the console, either of which may hold a secret: cleaned as that text.
        return self._clean(str(value))


class Terminal:
    """The console (stdout and stderr) until it is gone.

    ``detach`` points both file descriptors at /dev/null, so every later write, whoever makes
    it (a log line, a progress bar, the summary, the interpreter's final flush), succeeds
    without going anywhere: a vanished terminal can never crash the run.
    """

    def __init__(self) -> None:
        self.gone = False

    def detach(self) -> None:
        if self.gone:
            return
        self.gone = True
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)

    def say(self, line: str, *, err: bool = False) -> None:
        """A line for the user (stdout, or stderr with ``err``); once the terminal is gone, it
        goes to run.log instead, as a ``console.line`` event."""
        if not self.gone:
            stream = sys.stderr if err else sys.stdout
            try:
                stream.write(line + "\n")
                stream.flush()
                return
            except OSError:  # EIO from a hung-up terminal, EPIPE from a closed pipe
                self.detach()
        import structlog

        structlog.get_logger("nanobatch").info("console.line", line=line)

    def write(self, text: str) -> int:
        """Write to whatever ``sys.stderr`` is now (structlog's file): the live bar swaps in a
        proxy that prints lines above the bar, and a stream bound at setup would bypass it.
        A failure means the terminal is gone."""
        if not self.gone:
            try:
                sys.stderr.write(text)
            except OSError:
                self.detach()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                sys.stderr.flush()
            except OSError:
                self.detach()


TERMINAL = Terminal()


class JsonFile:
    """Append every event to a file as one JSON line, then pass it on."""

    def __init__(self, stream: IO[str]) -> None:
        import orjson  # here, not at import: see the module docstring

        self.stream = stream
        self._orjson = orjson

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        try:
            try:  # orjson: the standard library's encoder was a tenth of a logged event's cost
                line = self._orjson.dumps(event, default=str).decode()
            except TypeError:  # what orjson refuses (non-str keys, ints beyond 64 bits)
                line = json.dumps(event, default=str, ensure_ascii=False)
            self.stream.write(line + "\n")
            self.stream.flush()
        except OSError:
            pass  # a full disk: the event still reaches the console; the ledger matters more
        return event


class ConsoleLevel:
    """Drop events below the console's level (the file above has already kept them)."""

    def __init__(self, level: int) -> None:
        self.level = level
        # Once: getLevelNamesMapping() copies logging's table on every call.
        self.levels = {name.lower(): n for name, n in logging.getLevelNamesMapping().items()}

    def __call__(self, _: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if self.levels.get(method, logging.INFO) < self.level:
            import structlog

            raise structlog.DropEvent
        return event


# While the console shows no debug events: what ``setup`` configured (the processors and
# the logger class structlog holds) and the processors up to and including the file's.
_QUICK: tuple[tuple[Any, ...], type, list[Any]] | None = None


def debug(event: str, **fields: Any) -> None:
    """A debug event (one per attempt and per row: a run's hot path). While ``setup``'s
    configuration holds and the console shows no debug events, it goes through the same
    processors as ``log.debug`` up to run.log and stops there, as the console's filter would
    stop it, without structlog's bound logger, made again per call, around them (~40 calls
    of a 512 px row's ~1,300)."""
    import structlog

    quick, config = _QUICK, structlog.get_config()
    # By content: structlog's own capture_logs swaps the processors inside the same list.
    if quick is None or (tuple(config["processors"]), config["wrapper_class"]) != quick[:2]:
        structlog.get_logger("nanobatch").debug(event, **fields)  # configured since, elsewhere
        return
    fields["event"] = event  # where structlog puts it: after the fields
    for processor in quick[2]:
        fields = processor(None, "debug", fields)


def setup(verbose: int, secrets: list[str], out_dir: Path | None = None) -> None:
    """Configure structlog for a command; with ``out_dir``, also log to ``out_dir/run.log``."""
    import structlog

    console_level = logging.WARNING - 10 * min(verbose, 2)
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        Redact(secrets),
    ]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stream = open(out_dir / RUN_LOG, "a", encoding="utf-8")  # noqa: SIM115 (process lifetime)
        processors.append(JsonFile(stream))
    file_chain = list(processors) if out_dir is not None else []  # no file: dropped at once
    processors += [ConsoleLevel(console_level), structlog.dev.ConsoleRenderer(colors=False)]
    wrapper = structlog.make_filtering_bound_logger(
        logging.DEBUG if out_dir is not None else console_level
    )
    global _QUICK  # noqa: PLW0603 (the one configuration structlog holds is global too)
    _QUICK = (tuple(processors), wrapper, file_chain) if console_level > logging.DEBUG else None
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper,
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, TERMINAL)),
        cache_logger_on_first_use=False,
    )
