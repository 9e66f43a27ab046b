"""The spending cap: committed spend never passes it, whatever is in flight."""

from __future__ import annotations

import json
import math
import shlex
import signal
import time
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands.report import build_report
from pipeline.commands.run import run_and_report
from pipeline.core.budget import SpendingCap, attempt_cost, possibly_billed, worst_case
from pipeline.core.clock import VirtualClock
from pipeline.core.config import RetryConfig
from pipeline.core.prices import PriceTable
from pipeline.core.types import Delivery, Job, Outcome, OutcomeKind, TransportFailure
from pipeline.emulator import (
    EmulatorTransport,
)
from pipeline.providers.gemini.classify import classify, classify_failure
from pipeline.run.control import Halt
from pipeline.run.scheduler import run_manifest
from pipeline.store.journal import encode_line
from pipeline.store.spend import spent_in
from tests.commandline import nanobatch
from tests.helpers import TEST_KEY, emulator, run, run_config, slow_emulator, start_run, write_csv
from tests.test_classify import blocked, candidate, generation, image, response

FLASH_1K = 0.067


def job(images: int = 0, model: str = "gemini-3.1-flash-image-preview") -> Job:
    return Job("r", 1, "p", tuple(f"/x/{i}.png" for i in range(images)), model, None, None)


def test_reservations_never_pass_the_cap() -> None:
    cap = SpendingCap(cap_usd=0.21)
    assert [cap.reserve(FLASH_1K) for _ in range(4)] == [True, True, True, False]
    cap.settle(FLASH_1K, 0.0)  # a 503: nothing was billed, the room comes back
    assert cap.reserve(FLASH_1K)
    assert cap.spent_usd + cap.reserved_usd <= 0.21


def test_attempt_costs_follow_the_price_table() -> None:
    prices = PriceTable(refusal_usd=0.01)
    success = Outcome(OutcomeKind.SUCCESS, "STOP")
    refusal = Outcome(OutcomeKind.REFUSAL, "IMAGE_SAFETY")
    error = Outcome(OutcomeKind.TRANSIENT, "SERVER_ERROR_503", 503, delivery=Delivery.ERROR)
    timeout = Outcome(OutcomeKind.TRANSIENT, "TIMEOUT", delivery=Delivery.NO_ANSWER)
    assert attempt_cost(success, job(), "1K", prices) == FLASH_1K
    assert attempt_cost(refusal, job(), "1K", prices) == 0.01
    assert attempt_cost(error, job(), "1K", prices) == 0.0
    assert attempt_cost(timeout, job(), "1K", prices) == worst_case(job(), "1K", prices)
    pro = job(images=2, model="gemini-3-pro-image-preview")
    assert attempt_cost(success, pro, "4K", prices) == pytest.approx(0.24 + 2 * 0.0011)


def test_a_refusal_the_route_charges_costs_an_image() -> None:
    # Vertex bills Model Armor blocks as generations; other refusals cost the refusal price.
    armor = Outcome(OutcomeKind.REFUSAL, "MODEL_ARMOR", 200, billed_refusal=True)
    assert possibly_billed(armor)
    assert attempt_cost(armor, job(), "1K", PriceTable(refusal_usd=0.01)) == FLASH_1K


def test_the_cap_holds_under_64_requests_in_flight(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i:03d}", "prompt": f"p {i}"}
                                              for i in range(300)])  # fmt: skip
    cap = 1.0  # 14 images at $0.067: the 15th would pass it
    with slow_emulator("uniform:0.1-0.3") as server:
        result = nanobatch("run", str(manifest), "--out", str(tmp_path / "o"), "--base-url",
                           server.base_url, "--concurrency", "64", "--max-cost", str(cap),
                           key=TEST_KEY)  # fmt: skip
        billed = server.app.stats_snapshot()["billed"]
    assert result.returncode == 4, result.stderr
    assert "spending cap" in result.stderr
    assert "rows left" in result.stderr
    assert isinstance(billed, int)
    assert billed * FLASH_1K <= cap
    assert billed == 14  # the cap is used, not just respected
    rows = pq.read_table(tmp_path / "o" / "ledger.parquet").to_pylist()
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(billed * FLASH_1K)


# --- the one "possibly billed" rule -----------------------------------------------------------

DOWNLOAD_FAILED = Outcome(OutcomeKind.ROW_ERROR, "DOWNLOAD_FAILED", 200)  # as the pool builds it
CASES = {
    "a success": (classify(response(200, generation(candidate(image())))), True),
    "a 2xx body that is not JSON": (classify(response(200, b'{"candidates": [{"con')), True),
    "a 2xx with no candidates": (classify(response(200, b"{}")), True),
    "an image link that could not be fetched": (DOWNLOAD_FAILED, True),
    "sent, then timed out": (classify_failure(TransportFailure.TIMEOUT, "ReadTimeout"), True),
    "sent, then the connection dropped": (
        classify_failure(TransportFailure.CONNECTION, "ReadError", sent=True),
        True,
    ),
    "never connected": (classify_failure(TransportFailure.CONNECTION, "x", sent=False), False),
    "a 429": (classify(response(429, b'{"error": {"code": 429}}')), False),
    "a 503": (classify(response(503, b"Service Unavailable")), False),
    "a 400": (classify(response(400, b'{"error": {"code": 400, "message": "bad"}}')), False),
    "a gateway's 429 in a 200": (classify(response(200, b'{"error": {"code": 429}}')), False),
    "a refusal": (classify(response(200, blocked("PROHIBITED_CONTENT"))), False),
}


@pytest.mark.parametrize("case", CASES)
def test_every_answer_after_which_google_may_bill_counts_as_possibly_billed(case: str) -> None:
    outcome, billed = CASES[case]
    assert possibly_billed(outcome) is billed
    cost = attempt_cost(outcome, job(), "1K", PriceTable())
    if outcome.kind not in (OutcomeKind.SUCCESS, OutcomeKind.REFUSAL):
        assert cost == (worst_case(job(), "1K", PriceTable()) if billed else 0.0)


async def test_a_truncated_answer_is_charged_in_the_ledger_and_the_history(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "cat #truncatex1"},
                                              {"id": "b", "prompt": "dog"}])  # fmt: skip
    app = emulator(clock=clock)
    out = tmp_path / "out"
    result = await run(run_config(manifest, out, clock=clock), app)
    rows = {r["row_id"]: r for r in pq.read_table(out / "ledger.parquet").to_pylist()}
    assert (rows["a"]["status"], rows["a"]["attempts"]) == ("succeeded", 2)
    # The 200 whose body was cut off was a finished generation: counted at its worst case.
    assert rows["a"]["cost_usd"] == pytest.approx(2 * FLASH_1K)
    history = pq.read_table(out / "attempts.parquet").to_pylist()
    cut = next(a for a in history if a["row_id"] == "a" and a["attempt"] == 1)
    assert (cut["reason"], cut["possibly_billed"]) == ("MALFORMED_RESPONSE", True)
    assert cut["cost_usd"] == pytest.approx(FLASH_1K)
    assert result.spent_usd == pytest.approx(3 * FLASH_1K)
    assert spent_in(out) == pytest.approx(3 * FLASH_1K)


# --- the cap covers the whole job in a directory ---------------------------------------------


def test_two_runs_on_one_directory_stay_under_one_cap(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i:02d}", "prompt": f"p {i}"}
                                              for i in range(40)])  # fmt: skip
    app = emulator()
    out = tmp_path / "out"
    argv = ["run", str(manifest), "--out", str(out), "--max-cost", "1"]
    config = run_config(manifest, out, concurrency=16, max_cost_usd=1.0)
    codes: list[int] = []
    errors: list[str] = []
    for _ in range(2):  # a cron job or a restart loop repeats the same command
        codes.append(run_and_report(config, EmulatorTransport(app), argv=argv,
                                    out=lambda _: None, err=errors.append))  # fmt: skip
    billed = app.stats_snapshot()["billed"]
    assert codes == [4, 4]
    assert isinstance(billed, int)
    assert billed * FLASH_1K <= 1.0
    assert billed == 14  # the cap is used, not just respected
    status = json.loads((out / "status.json").read_text())
    assert status["spend_usd"] == 0  # the second run could send nothing
    assert status["job_spend_usd"] == pytest.approx(14 * FLASH_1K)
    assert status["max_cost_usd"] == 1.0
    assert spent_in(out) == pytest.approx(14 * FLASH_1K)

    # The command to continue names a cap for the whole job: spent + what is left.
    again = shlex.split(errors[-1].split("To continue: ", 1)[1])
    cap = float(again[again.index("--max-cost") + 1])
    assert again.count("--max-cost") == 1
    assert cap == pytest.approx(math.ceil(40 * FLASH_1K * 100) / 100)
    config = run_config(manifest, out, concurrency=16, max_cost_usd=cap)
    code = run_and_report(config, EmulatorTransport(app), argv=again[1:],
                          out=lambda _: None, err=errors.append)  # fmt: skip
    assert code == 0, errors[-1]
    assert app.stats_snapshot()["billed"] == 40
    assert spent_in(out) == pytest.approx(40 * FLASH_1K)


def test_spend_so_far_counts_every_attempt_of_every_run(tmp_path: Path) -> None:
    # A directory from before attempts carried their cost: its ledger's cost_usd is what it kept.
    old = pa.table({"row_id": ["a", "a", "b"], "attempt": pa.array([1, 2, 1], pa.int32())})
    pq.write_table(old, tmp_path / "attempts.parquet")
    ledger = pa.table({"row_id": ["a", "b", "c"], "cost_usd": [0.134, 0.067, 0.5]})
    pq.write_table(ledger, tmp_path / "ledger.parquet")
    assert spent_in(tmp_path) == pytest.approx(0.201)
    # A run going on: its attempts are still in the journal, a torn last line is ignored.
    lines = [encode_line({"row_id": "c", "attempt": 1, "cost_usd": 0.24}),
             encode_line({"row_id": "c", "attempt": 2, "cost_usd": 0.0}), b"0000 {"]  # fmt: skip
    (tmp_path / "attempts.journal").write_bytes(b"".join(lines))
    assert spent_in(tmp_path) == pytest.approx(0.441)
    assert spent_in(tmp_path / "new") == 0.0


async def test_the_report_counts_what_earlier_runs_of_a_row_cost(
    tmp_path: Path, clock: VirtualClock
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "cat #truncatex2"}])
    app = emulator(clock=clock)
    out = tmp_path / "out"
    config = run_config(manifest, out, retry=RetryConfig(max_attempts=2), clock=clock)
    first = await run(config, app)  # two cut-off answers: failed
    second = await run(config, app)  # then a whole one
    assert (first.by_status["failed"], second.by_status["succeeded"]) == (1, 1)
    assert second.spent_before_usd == pytest.approx(2 * FLASH_1K)
    row = pq.read_table(out / "ledger.parquet").to_pylist()[0]
    assert row["cost_usd"] == pytest.approx(FLASH_1K)  # the ledger keeps the last run's
    assert build_report(out).spend_usd == pytest.approx(3 * FLASH_1K)


def test_what_a_killed_run_had_in_flight_counts_against_the_cap(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": f"r{i}", "prompt": f"p {i}"}
                                              for i in range(8)])  # fmt: skip
    out = tmp_path / "out"
    with slow_emulator("1.5") as server:
        process = start_run(manifest, out, server.base_url, "--concurrency", "4", "--max-cost", "1")
        deadline = time.monotonic() + 30
        # The server counts a request when its headers arrive and bills it once its body is
        # read: wait for the bill, so that all four were wholly sent (answers take 1.5 s).
        while server.app.stats_snapshot()["billed"] != 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # four requests in flight, none answered yet
        process.wait()
        billed = server.app.stats_snapshot()["billed"]
        assert billed == 4  # the server finishes (and bills) what the killed run sent

        # The restart, with a cap those four requests already use up: nothing more is sent.
        cap = 4 * FLASH_1K + 0.01
        restart = run_config(manifest, out, base_url=server.base_url, max_cost_usd=cap)
        result = anyio.run(run_manifest, restart)
        assert result.halt is Halt.COST_CAP
        assert server.app.stats_snapshot()["billed"] == billed
    assert result.spent_before_usd == pytest.approx(4 * FLASH_1K)
    lost = pq.read_table(out / "attempts.parquet").to_pylist()
    assert [(a["reason"], a["possibly_billed"]) for a in lost] == [("CRASHED", True)] * 4
    assert not (out / "inflight.journal").exists()  # this run recorded all it sent (nothing)
