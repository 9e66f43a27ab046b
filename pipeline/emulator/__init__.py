"""A local emulator of Gemini's image generation API (``generateContent``, and the Files and Batch
APIs), for tests, demos and benchmarks: Google's validation and error bodies, real images at the
documented sizes, refusals, seeded faults, an rpm limit, batch jobs that take time and fail the
ways real ones do, and counters of what a client was billed.

It is written from the API's documented behaviour and imports nothing from the client side.
"""

from pipeline.emulator.app import EmulatorApp, create_app
from pipeline.emulator.batchspecs import (
    BatchFault,
    BatchFaultSpec,
    parse_batch_delay,
    parse_batch_faults,
)
from pipeline.emulator.config import EmulatorConfig, Payload
from pipeline.emulator.process import EmulatorProcess
from pipeline.emulator.server import BackgroundEmulator, serve
from pipeline.emulator.specs import (
    FaultKind,
    FaultSpec,
    LatencySpec,
    parse_faults,
    parse_latency,
)
from pipeline.emulator.transport import EmulatorTransport

__all__ = [
    "BackgroundEmulator",
    "BatchFault",
    "BatchFaultSpec",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorTransport",
    "FaultKind",
    "FaultSpec",
    "LatencySpec",
    "Payload",
    "create_app",
    "parse_batch_delay",
    "parse_batch_faults",
    "parse_faults",
    "parse_latency",
    "serve",
]
