"""Read a ``generateContent`` answer as it arrives, decoding each large image straight into a
temp file of the output folder (``store.spool``), so that an answer in flight costs a few
buffers, not its ~25 MB of JSON (a 4K image) and its decoded image beside it.

The answer's JSON is kept whole except the values of ``"data"`` keys (``inlineData.data``):
each one longer than ``SPOOL_AFTER`` is decoded from base64 as it streams (hashed and written
as it goes), and a placeholder that names its spool takes its place in the JSON kept. A part's
``"thought": true`` may come after its ``inlineData``, and ``finishReason`` and the token counts
after the parts: so every spool is provisional until the whole answer is classified, by the
same classifier as ever (``classify``), given the JSON without the image bytes and the spools
standing for them. What the outcome keeps is stored by a rename; the rest is removed.

Why this is exact, not a second parser:

1. Inside a JSON string every ``"`` is escaped, so ``"data"`` followed by ``:`` and ``"`` is a
   key ``data`` whose value is a string, or the JSON was broken before it. A key that merely
   ends in ``\\"data`` is spooled too; nothing reads it, so its spool is removed.
2. A value is spooled only while it is plain standard base64 (``A-Z a-z 0-9 + /``, padding
   at its very end), decoded in groups of four characters, the last group kept back until
   the closing quote: the same bytes ``jsonread.b64decode`` would give for the whole string.
   Anything else (an escape, a line break, the URL-safe alphabet, missing padding) turns the
   value back into its exact text (re-encoding whole groups is a bijection) and it stays in
   the JSON, for the classifier to read as it always did.
3. Swapping one run of base64 characters for another inside a string cannot change whether
   the JSON is valid; still, when the JSON kept does not parse, the answer's exact bytes are
   rebuilt and classified whole, so a broken answer is described as before (its size, its
   first bytes). Non-2xx answers (small error bodies) are always read whole.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pybase64

from pipeline.core import jsonread as jr
from pipeline.core.types import Outcome, RawResponse, SpooledFile
from pipeline.providers.gemini.extract import Spooled
from pipeline.store.spool import Spool

# A value is spooled once it is this long. Measured in-process (reader + store, CPU per
# answer): a 512 px answer (0.35 MB) costs ~20% more spooled than whole, a 1K one (1.4 MB)
# the same, a 4K one a third; and memory only matters for the large ones.
SPOOL_AFTER = 1 << 20

_KEY = re.compile(rb'"data"\s*:\s*"')
_LOOK_BACK = 64  # bytes of the JSON kept that a key split across two chunks may start in

# The placeholders' secret part: drawn once per process, not per answer (a system call each);
# with a counter, no two answers share a placeholder, and the server never sees either.
_SECRET = secrets.token_hex(8)
_answers = itertools.count()

# classify(response, spooled): the outcome, images standing for spools where it chose them.
Classify = Callable[[RawResponse, Spooled], Outcome]


class StreamingAnswer:
    """An ``AnswerReader`` (``providers.base``) that spools large images to ``folder``.

    Three states, one at a time: in the JSON (looking for the next ``"data"`` key), in a
    ``"data"`` value (kept in ``_value`` while short, then decoded into ``_spool``), or in a
    value that is not plain base64 (``_verbatim``: copied into the JSON to its closing quote).
    """

    __slots__ = (
        "_chunks",
        "_classify",
        "_escaped",
        "_headers",
        "_json",
        "_mark",
        "_pending",
        "_scan_from",
        "_spool",
        "_spool_after",
        "_spools",
        "_status",
        "_unspooled",
        "_value",
        "_verbatim",
        "_whole",
        "folder",
    )

    def __init__(self, classify: Classify, folder: Path, spool_after: int = SPOOL_AFTER) -> None:
        self._classify = classify
        self.folder = folder
        self._spool_after = spool_after  # tests spool small values too
        self._status = 0
        self._headers: dict[str, str] = {}
        self._whole = False  # a non-2xx or short answer: kept as it came
        self._chunks: list[bytes] = []  # the whole body (``_whole`` only)
        self._json = bytearray()  # the JSON kept: everything but spooled values
        self._scan_from = 0  # where in _json the next key may start
        self._value: bytearray | None = None  # a "data" value being read, not yet spooled
        self._spool: Spool | None = None  # the spool of the value being read, once it is
        self._pending = b""  # its base64 not yet decoded (the last group is always kept back)
        self._verbatim = False  # inside a value that is not plain base64
        self._escaped = False  # ... whose text so far ends in an unpaired backslash
        self._spools: dict[str, Spool] = {}  # placeholder -> its finished spool
        self._unspooled = False  # the disk would not give a temp file: values stay in memory
        self._mark = f"nanobatch-spool-{_SECRET}-{next(_answers)}-"  # unguessable by the server

    def begin(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._headers = {k.lower(): v for k, v in headers.items()}
        # Read whole: an error's small body, and an answer too short to hold a value that would
        # be spooled (scanning it cost ~4% of a 512 px run's CPU, for the same bytes in the end).
        self._whole = not 200 <= status < 300 or self._short()

    def _short(self) -> bool:
        """Whether the body is known to be no longer than a value that would be spooled (its
        length given, and not compressed: a compressed length says nothing of the JSON's)."""
        length = self._headers.get("content-length", "")
        encoding = self._headers.get("content-encoding", "identity").strip().lower()
        return length.isdigit() and int(length) <= self._spool_after and encoding == "identity"

    def feed(self, chunk: bytes) -> None:
        if self._whole:
            self._chunks.append(chunk)
            return
        at = 0  # offsets into the chunk, not slices: a 4K answer is ~400 chunks of 64 KB
        while at < len(chunk):
            if self._verbatim:
                at = self._feed_verbatim(chunk, at)
            elif self._value is not None or self._spool is not None:
                at = self._feed_value(chunk, at)
            else:
                at = self._feed_json(chunk, at)

    def finish(self) -> Outcome:
        if self._whole:
            body, self._chunks = b"".join(self._chunks), []
            return self._classify(RawResponse(self._status, self._headers, body), {})
        kept = bytes(self._json)
        self._json = bytearray()
        inside = self._spool is not None or self._value is not None or self._verbatim
        if inside or (self._spools and not _parses(kept)):
            # Broken JSON: described from its exact bytes (its size, its first words).
            body = self._rebuilt(kept)
            return self._classify(RawResponse(self._status, self._headers, body), {})
        spooled = {mark: spool.close() for mark, spool in self._spools.items()}
        self._spools = {}
        try:
            outcome = self._classify(RawResponse(self._status, self._headers, kept), spooled)
        except BaseException:
            _remove(spooled.values(), keep=set())
            raise
        _remove(spooled.values(), keep={i.spooled.path for i in outcome.images if i.spooled})
        return outcome

    def abort(self) -> None:
        for spool in [*self._spools.values(), *([self._spool] if self._spool else [])]:
            spool.discard()
        self._spools, self._spool, self._value = {}, None, None
        self._json, self._chunks = bytearray(), []

    # --- the JSON between values ---------------------------------------------------------

    def _feed_json(self, chunk: bytes, at: int) -> int:
        start = len(self._json)
        self._json += memoryview(chunk)[at:]
        found = _KEY.search(self._json, self._scan_from)
        if found is None:
            self._scan_from = max(self._scan_from, len(self._json) - _LOOK_BACK)
            return len(chunk)
        # The value starts after the match: what of this chunk follows it is the value's.
        del self._json[found.end() :]
        self._scan_from = found.end()
        self._value = bytearray()
        return at + found.end() - start

    # --- a "data" value ------------------------------------------------------------------

    def _feed_value(self, chunk: bytes, at: int) -> int:
        quote = chunk.find(b'"', at)
        escape = chunk.find(b"\\", at, len(chunk) if quote < 0 else quote)
        stop = escape if escape >= 0 else quote  # where plain base64 would stop
        end = len(chunk) if stop < 0 else stop
        text = memoryview(chunk)[at:end]
        if self._spool is None:
            assert self._value is not None
            self._value += text
            if len(self._value) <= self._spool_after or self._unspooled or escape >= 0:
                if stop >= 0:  # short, or with an escape: kept in the JSON as it came
                    self._json += self._value
                    self._value = None
                    self._scan_from = len(self._json)
                    self._verbatim = escape >= 0
                return end
            try:
                self._spool = Spool(self.folder)
            except OSError:  # no temp file (a full or read-only disk): kept in memory
                self._unspooled = True
                return self._feed_value(chunk, end)  # as a short value: at its end or not
            text, self._value = memoryview(self._value), None  # the view keeps it, uncopied
        self._decode(text)
        if self._spool is not None and stop >= 0:
            if escape < 0:
                self._end_spool()
            else:
                self._to_verbatim()  # an escape: not plain base64
        return end

    def _decode(self, text: memoryview) -> None:
        """Decode every whole group of the value so far but the last (which may be padded).

        ``text`` is decoded where it lies: only the group held back from the piece before (at
        most four characters) is completed from its first characters and decoded apart, so no
        piece of a 25 MB value is copied to be joined to the next.
        """
        spool = self._spool
        assert spool is not None
        held = self._pending
        total = len(held) + len(text)
        upto = total - (total % 4 or 4)  # characters to decode now: the last group is kept
        if upto <= 0:
            self._pending = held + text
            return
        if held:
            join = -len(held) % 4  # what completes the held-back group (0: it was whole)
            group = held + text[:join]
            if not _decoded_into(spool, group):
                self._pending = held + text
                self._to_verbatim()
                return
            text, upto = text[join:], upto - len(group)
        if not _decoded_into(spool, text[:upto]):
            self._pending = bytes(text)
            self._to_verbatim()
            return
        self._pending = bytes(text[upto:])

    def _end_spool(self) -> None:
        """The closing quote: the last group decides whether the value was plain base64."""
        spool = self._spool
        assert spool is not None
        try:
            if len(self._pending) != 4:
                raise ValueError("not a whole group")
            spool.write(pybase64.b64decode(self._pending, validate=True))
        except ValueError:
            self._to_verbatim()
            self._verbatim = False  # at its closing quote already
            self._scan_from = len(self._json)
            return
        mark = f"{self._mark}{len(self._spools)}"
        self._spools[mark] = spool
        self._spool, self._pending = None, b""
        self._json += mark.encode()

    def _to_verbatim(self) -> None:
        """The value is not plain base64: back to its exact text, kept in the JSON."""
        spool = self._spool
        assert spool is not None
        self._json += pybase64.b64encode(spool.written()) + self._pending
        spool.discard()
        self._spool, self._pending = None, b""
        self._verbatim, self._escaped = True, False

    def _feed_verbatim(self, chunk: bytes, at: int) -> int:
        """The rest of a value kept as text, to its closing quote (escapes honoured)."""
        i = at
        if self._escaped:
            i, self._escaped = at + 1, False  # the character after a backslash is not the end
        while True:
            quote = chunk.find(b'"', i)
            escape = chunk.find(b"\\", i, len(chunk) if quote < 0 else quote)
            if escape >= 0:
                i = escape + 2
                if i > len(chunk):
                    self._escaped = True
                    break
                continue
            if quote >= 0:
                self._json += memoryview(chunk)[at:quote]
                self._verbatim = False
                self._scan_from = len(self._json)
                return quote
            break
        self._json += memoryview(chunk)[at:]
        return len(chunk)

    def _rebuilt(self, kept: bytes) -> bytes:
        """The answer's exact bytes, spooled values put back as the base64 they came as."""
        body = kept
        for mark, spool in self._spools.items():
            body = body.replace(mark.encode(), pybase64.b64encode(spool.written()), 1)
            spool.discard()
        if self._spool is not None:
            body += pybase64.b64encode(self._spool.written()) + self._pending
            self._spool.discard()
        elif self._value is not None:
            body += self._value
        self._spools, self._spool, self._value, self._pending = {}, None, None, b""
        return body


def _decoded_into(spool: Spool, groups: bytes | memoryview) -> bool:
    """Decode whole groups of base64 into ``spool``; False, with nothing written, unless they
    are plain standard base64 with no padding (only the value's last group, always held back
    to its closing quote, may be padded: ``=`` anywhere else is not one value's base64)."""
    if groups[-1:] == b"=":  # any other ``=`` is refused by validate
        return False
    try:
        decoded = pybase64.b64decode(groups, validate=True)
    except ValueError:  # a character outside the standard alphabet, or inner padding
        return False
    spool.write(decoded)
    return True


def _parses(body: bytes) -> bool:
    try:
        jr.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def _remove(spooled: Iterable[SpooledFile | bytes], keep: set[str]) -> None:
    """Remove the spools the outcome did not keep (thought images, refusals' drafts)."""
    for item in spooled:
        if isinstance(item, SpooledFile) and item.path not in keep:
            Path(item.path).unlink(missing_ok=True)
