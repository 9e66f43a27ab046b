"""How rows are cut into jobs: by estimated output bytes (a job's result file must stream
comfortably: ~1 GB by default), by input bytes (the JSONL file stays under the API's 2 GB),
and by a request count; one model per job (the Batch API takes one model per job).

A result line carries its image as base64 inside JSON: about 4/3 of the image's bytes, plus
the response around it. The estimates err high, so a job's results stay under the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import RunConfig

# Estimated bytes of one result line by output size: a 512 px image is a few hundred KB, a 1K
# PNG ~1.5 MB, 2K ~6 MB, 4K ~25 MB of JSON (base64 and the response around it).
RESULT_LINE_BYTES = {"512": 600_000, "1K": 2_000_000, "2K": 8_000_000, "4K": 25_000_000}
MAX_INPUT_BYTES = 1_900_000_000  # the Batch API takes JSONL files up to 2 GB


def result_bytes(size: str) -> int:
    """The most one result line of ``size`` should take (unknown sizes: the largest)."""
    return RESULT_LINE_BYTES.get(size, max(RESULT_LINE_BYTES.values()))


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a request file is cut into a job of its own."""

    max_requests: int
    max_output_bytes: int
    max_input_bytes: int = MAX_INPUT_BYTES

    @classmethod
    def of(cls, config: RunConfig) -> Cut:
        return cls(max(1, config.batch_max_requests), config.batch_max_output_bytes)

    def takes(self, requests: int, output: int, input_bytes: int) -> bool:
        """Whether a job of these totals (the row being added included) is within the cut; a
        job of one row always is (a row over a limit on its own is the route's to refuse)."""
        return requests == 1 or (
            requests <= self.max_requests
            and output <= self.max_output_bytes
            and input_bytes <= self.max_input_bytes
        )
