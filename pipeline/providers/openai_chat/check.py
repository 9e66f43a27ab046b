"""The gateway check: before the first paid request, one unbilled ``GET {base}/models`` (the
OpenAI-compatible model list that OpenRouter, LiteLLM proxies, new-api / one-api and Vercel's
gateway all serve) with the run's key, so a wrong ``--base-url``, a key the gateway refuses, an
account out of credit or a model the gateway does not list stops the run at once with one line
(``UsageError``: exit 2, nothing spent), never with the key in it.

Only a definite answer stops the run. One that says nothing about the route (a 408, a 429, a
5xx, a timeout, no connection) lets it start: its rows then meet the retry policy as usual.
OpenRouter's list is public (it reads no key): there a wrong key shows in the first paid
request's 401 instead, which is never billed and stops the run within ``--concurrency``
requests. An empty list says nothing about the model.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

import structlog

from pipeline.core.errors import UsageError
from pipeline.core.types import Outcome, OutcomeKind, RawResponse
from pipeline.providers.base import PreparedRequest, Provider, WholeBody
from pipeline.providers.exchange import exchange
from pipeline.providers.http import HttpClient

log = structlog.get_logger("nanobatch")

CHECK_TIMEOUT_S = 60.0
_INCONCLUSIVE = frozenset({408, 425, 429})
_SAID = 200  # characters of the gateway's own words kept in a message


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the check is about: the base before ``/chat/completions``, the model the run sends,
    and where its key came from (for messages; the key itself is never here)."""

    base: str
    model: str
    source: str


def models_url(chat_url: str) -> str:
    return chat_url.removesuffix("/chat/completions") + "/models"


async def check_gateway(
    provider: Provider, client: HttpClient, chat_url: str, model: str, secret: str
) -> None:
    """List the gateway's models with ``provider``'s key; raise ``UsageError`` saying what is
    wrong and how to fix it, or return (the gateway lists the model, or could not say).
    ``secret``: the key, only to blank it out of whatever the gateway says back."""
    url = models_url(chat_url)
    request = PreparedRequest(model=model, url=url, body=b"", fingerprint="",
                              timeout_s=CHECK_TIMEOUT_S, upload_bytes=0, headers={},
                              method="GET")  # fmt: skip
    answers: list[RawResponse] = []

    def keep(response: RawResponse) -> Outcome:
        answers.append(response)
        return Outcome(OutcomeKind.SUCCESS, "OK", response.status)  # a list: never billed

    outcome = await exchange(provider, client, request, lambda _: WholeBody(keep))
    gateway = Gateway(chat_url.removesuffix("/chat/completions"), model, provider.auth.source)
    if not answers:  # no answer at all: a timeout, no connection
        log.warning("route.check_inconclusive", reason=outcome.reason, url=url)
        return
    problem = judge(answers[0], gateway)
    if problem is None:
        log.info("route.checked", model=model, url=url)
        return
    if problem == "":
        log.warning("route.check_inconclusive", status=answers[0].status, url=url)
        return
    raise UsageError(problem.replace(secret, "***") if secret else problem)


def judge(response: RawResponse, gateway: Gateway) -> str | None:
    """What is wrong, from the list's answer: a message; ``None`` if nothing; ``""`` if the
    answer cannot say (pure: table-tested)."""
    status, base, source = response.status, gateway.base, gateway.source
    said = _said(response.body)
    detail = f": {said}" if said else ""
    if 200 <= status < 300:
        ids = _model_ids(response.body)
        if ids is None:
            return (
                f"the gateway at {base} did not answer GET {base}/models with a model list: "
                "--base-url must be the address before /chat/completions, e.g. "
                "https://openrouter.ai/api/v1"
            )
        if not ids or not gateway.model or gateway.model in ids:
            return None
        near = difflib.get_close_matches(gateway.model, sorted(ids), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        return (
            f"the gateway at {base} does not list the model {gateway.model}{hint}: pass --model "
            f"with an id from GET {base}/models ({len(ids)} listed)"
        )
    if status in _INCONCLUSIVE or status >= 500:
        return ""
    if status in (401, 403):
        return (
            f"the gateway at {base} refused {source} (HTTP {status}{detail}): pass the "
            "gateway's own key with --api-key or NANOBATCH_GATEWAY_KEY"
        )
    if status == 402:
        return (
            f"the gateway at {base} says the account behind {source} is out of credit "
            f"(HTTP 402{detail}): add credit there, or use another key"
        )
    if 300 <= status < 400:
        where = response.headers.get("location", "elsewhere")
        return (
            f"the gateway at {base} answered GET {base}/models with a redirect to {where}: "
            "set --base-url to the address that answers"
        )
    if status in (404, 405):
        return (
            f"the gateway at {base} has no {base}/models (HTTP {status}): --base-url must be "
            "the address before /chat/completions, e.g. https://openrouter.ai/api/v1"
        )
    return f"the gateway at {base} refused GET {base}/models (HTTP {status}{detail})"


def _model_ids(body: bytes) -> set[str] | None:
    """The ids of an OpenAI model list (``{"data": [{"id": ...}]}``), or None if it is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        return None
    return {m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)}


def _said(body: bytes) -> str:
    """The gateway's own error message, on one line and short (``error.message``, else
    ``message``), or nothing."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    error = document.get("error")
    message = error.get("message") if isinstance(error, dict) else document.get("message")
    if not isinstance(message, str):
        return ""
    return " ".join(message.split())[:_SAID].rstrip(".")
