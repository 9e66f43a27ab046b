"""What Vertex AI answers differently from the Gemini API: its authentication and permission
errors, which locations serve which model, error bodies sometimes sent as a JSON array
(``--error-array RATE``), and Model Armor blocks.

Model Armor screens prompts and answers on Vertex only; a prompt token ``#armor`` blocks the
prompt (``promptFeedback.blockReason: MODEL_ARMOR``), ``#armorout`` blocks the answer (a
candidate with ``finishReason: MODEL_ARMOR`` and no image). Both are refusals that Google bills.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from pipeline.emulator.errors import TYPE_PREFIX, ApiError
from pipeline.emulator.faults import unit
from pipeline.emulator.routes import ApiRoute, RouteKind

_DEVCONSOLE = "https://developers.google.com/identity/sign-in/web/devconsole-project."
# Vertex serves these ids in these locations only; other models are served everywhere.
_LOCATIONS: dict[str, frozenset[str]] = {
    "gemini-3.1-flash-image-preview": frozenset({"global"}),
    "gemini-3.1-flash-image": frozenset({"global"}),
}
# Preview ids Vertex no longer serves (the GA id replaced it there).
_RETIRED = frozenset({"gemini-3-pro-image-preview"})
_ARMOR = re.compile(r"#armor(?P<out>out)?(?![\w])", re.IGNORECASE)
ARMOR_PROMPT_MESSAGE = (
    "Blocked by Model Armor Floor Setting: The prompt violated Responsible AI Safety settings "
    "(Harassment, Dangerous), Prompt Injection and Jailbreak filters."
)
ARMOR_RESPONSE_MESSAGE = (
    "Blocked by Model Armor Floor Setting: The model response violated Responsible AI Safety "
    "settings (Sexually Explicit, Dangerous)."
)


def _info(reason: str, **metadata: str) -> dict[str, object]:
    return {
        "@type": TYPE_PREFIX + "ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "aiplatform.googleapis.com", **metadata},
    }


def token_expired() -> ApiError:
    message = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        f"cookie or other valid authentication credential. See {_DEVCONSOLE}"
    )
    return ApiError(401, "UNAUTHENTICATED", message, (_info("ACCESS_TOKEN_EXPIRED"),))


def insufficient_scopes() -> ApiError:
    method = "google.cloud.aiplatform.v1.PredictionService.GenerateContent"
    info = _info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", method=method)
    return ApiError(
        403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", (info,)
    )


def permission_denied(route: ApiRoute) -> ApiError:
    """A project this emulator does not know (``--vertex-projects``), as IAM words it."""
    resource = f"//aiplatform.googleapis.com/{route.vertex_name}"
    permission = "aiplatform.endpoints.predict"
    message = f"Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
    info = _info("IAM_PERMISSION_DENIED", permission=permission, resource=resource)
    return ApiError(403, "PERMISSION_DENIED", message, (info,))


def express_key_invalid() -> ApiError:
    message = "API key not valid. Please pass a valid API key."
    return ApiError(400, "INVALID_ARGUMENT", message, (_info("API_KEY_INVALID"),))


def serves(route: ApiRoute, model_id: str) -> bool:
    """Whether Vertex offers this model at this route's location (express mode is global)."""
    if model_id in _RETIRED:
        return False
    location = route.location if route.kind is RouteKind.VERTEX else "global"
    allowed = _LOCATIONS.get(model_id)
    return allowed is None or location in allowed


def error_renderer(seed: int, rate: float, key: bytes) -> Callable[[ApiError], tuple[int, bytes]]:
    """How this request's errors are written: Google's object, or (at ``rate``) an array."""
    as_array = rate > 0 and unit(seed, "error-array", hashlib.sha256(key).digest()) < rate

    def render(error: ApiError) -> tuple[int, bytes]:
        if not as_array:
            return error.code, error.body()
        return error.code, json.dumps([json.loads(error.body())], indent=2).encode()

    return render


def armor(prompt: str) -> str | None:
    """``"prompt"`` or ``"response"`` when a Model Armor token is in the prompt."""
    match = _ARMOR.search(prompt) if "#" in prompt else None
    if match is None:
        return None
    return "response" if match["out"] else "prompt"


def armor_body(refusal: bytes, where: str) -> bytes:
    """Turn a Gemini refusal body (a blocked prompt or a refused image) into Model Armor's."""
    document = json.loads(refusal)
    if where == "prompt":
        document["promptFeedback"] = {
            "blockReason": "MODEL_ARMOR",
            "blockReasonMessage": ARMOR_PROMPT_MESSAGE,
        }
    else:
        candidate = document["candidates"][0]
        candidate["finishReason"] = "MODEL_ARMOR"
        candidate["finishMessage"] = ARMOR_RESPONSE_MESSAGE
    return json.dumps(document, separators=(",", ":")).encode()
