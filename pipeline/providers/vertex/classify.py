"""What Vertex AI's answers add to the Gemini API's, for the classifier: Model Armor.

Everything else is the native classifier's (``gemini.classify``): Vertex's body is the native
body, its error bodies are Google's ``google.rpc.Status`` (sometimes inside a JSON array,
``[{"error": {...}}]``, which the error reader takes), and ``usageMetadata.trafficType`` says
which tier served the request (read into ``Outcome.tier``).

Model Armor screens prompts and answers on Vertex: a blocked prompt comes back as
``promptFeedback.blockReason: MODEL_ARMOR``, a blocked answer as ``finishReason: MODEL_ARMOR``.
Both are refusals (the same prompt would be blocked again), and both are billed: Google charges
them as generations, so the money rule must count them (``Outcome.billed_refusal``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Unpack

from pipeline.core.types import Outcome, OutcomeKind, RawResponse
from pipeline.providers.gemini.answers import NativeOptions
from pipeline.providers.gemini.classify import classify as classify_native

MODEL_ARMOR = "MODEL_ARMOR"
ARMOR_REASONS = frozenset({MODEL_ARMOR, f"PROMPT_BLOCKED:{MODEL_ARMOR}"})


def classify(response: RawResponse, **options: Unpack[NativeOptions]) -> Outcome:
    """The native classification (at the tier asked for), with Model Armor's refusals marked
    billed."""
    outcome = classify_native(response, **options)
    if outcome.kind is OutcomeKind.REFUSAL and outcome.reason in ARMOR_REASONS:
        return replace(outcome, billed_refusal=True)
    return outcome
