"""Choosing the route: --provider and the SDK's variables, flags that do not apply refused,
the API version by model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.core.errors import UsageError
from pipeline.core.routes import Route, api_version, resolve_route
from pipeline.providers.gemini.provider import GeminiProvider
from tests.helpers import write_csv

NO_ENV: dict[str, str] = {}
VERTEX_ON = {"GOOGLE_GENAI_USE_VERTEXAI": "1"}


@pytest.mark.parametrize(
    ("flag", "env", "route"),
    [
        (None, {}, Route.GEMINI),
        (None, {"GOOGLE_GENAI_USE_VERTEXAI": "true"}, Route.VERTEX),
        (None, {"GOOGLE_GENAI_USE_VERTEXAI": "1"}, Route.VERTEX),
        (None, {"GOOGLE_GENAI_USE_VERTEXAI": "false"}, Route.GEMINI),
        (None, {"GOOGLE_GENAI_USE_ENTERPRISE": "TRUE"}, Route.VERTEX),
        # The newer name wins when set, either way.
        (
            None,
            {"GOOGLE_GENAI_USE_ENTERPRISE": "0", "GOOGLE_GENAI_USE_VERTEXAI": "1"},
            Route.GEMINI,
        ),
        ("gemini", {"GOOGLE_GENAI_USE_VERTEXAI": "true"}, Route.GEMINI),  # the flag wins
        ("openai-chat", {}, Route.OPENAI_CHAT),
        ("Vertex", {}, Route.VERTEX),
    ],
)
def test_route_is_chosen_as_the_sdk_chooses_with_the_flag_winning(
    flag: str | None, env: dict[str, str], route: Route
) -> None:
    assert resolve_route(flag, None, None, None, env=env).provider is route


def test_vertex_location_and_project_come_from_flags_then_variables_then_global() -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "p-env", "GOOGLE_CLOUD_LOCATION": "us-central1"}
    assert resolve_route("vertex", None, None, None, env=NO_ENV).location == "global"
    assert resolve_route("vertex", None, None, None, env=NO_ENV).project is None
    from_env = resolve_route("vertex", None, None, None, env=env)
    assert (from_env.project, from_env.location) == ("p-env", "us-central1")
    flags = resolve_route("vertex", "p-flag", "eu", None, env=env)
    assert (flags.project, flags.location) == ("p-flag", "eu")


def test_cloud_variables_are_ignored_on_the_gemini_api_but_flags_are_refused() -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_CLOUD_LOCATION": "us"}
    assert resolve_route(None, None, None, None, env=env).project is None
    with pytest.raises(UsageError, match="--project applies to --provider vertex only"):
        resolve_route("gemini", "p", None, None, env=NO_ENV)
    with pytest.raises(UsageError, match="--location applies to --provider vertex only"):
        resolve_route("openai-chat", None, "us", None, env=NO_ENV)


@pytest.mark.parametrize(
    ("provider", "version", "auth", "words"),
    [
        ("bing", None, None, "use one of gemini, vertex, openai-chat"),
        ("openai-chat", "v1", None, "part of --base-url"),
        ("gemini", "v1beta1", None, "takes v1 or v1beta or v1alpha"),
        ("vertex", "v1beta", None, "takes v1 or v1beta1"),
        ("openai-chat", None, "query", "Bearer token"),
    ],
)
def test_flags_a_route_does_not_take_are_refused_with_the_reason(
    provider: str, version: str | None, auth: str | None, words: str
) -> None:
    with pytest.raises(UsageError, match=words):
        resolve_route(provider, None, None, version, env=NO_ENV, auth=auth)


@pytest.mark.parametrize(
    ("route", "model", "chosen", "expected"),
    [
        (Route.GEMINI, "gemini-3.1-flash-image-preview", None, "v1beta"),
        (Route.GEMINI, "gemini-3.1-flash-image", None, "v1"),
        (Route.GEMINI, "gemini-2.5-flash-image", None, "v1"),
        (Route.GEMINI, "gemini-2.5-flash-image", "v1beta", "v1beta"),
        (Route.VERTEX, "gemini-3-pro-image", None, "v1"),
        (Route.VERTEX, "gemini-3.1-flash-image-preview", None, "v1beta1"),
    ],
)
def test_api_version_follows_the_model_unless_chosen(
    route: Route, model: str, chosen: str | None, expected: str
) -> None:
    assert api_version(route, model, chosen) == expected


def test_gemini_url_carries_the_version() -> None:
    assert "/v1/models/gemini-2.5-flash-image:" in GeminiProvider("http://h").url(
        "gemini-2.5-flash-image"
    )
    chosen = GeminiProvider("http://h", api_version="v1alpha")
    assert "/v1alpha/models/" in chosen.url("gemini-2.5-flash-image")


def test_vertex_from_the_environment_is_the_route_too(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a lamp"}])
    missing = tmp_path / "missing.json"
    env = {
        "GOOGLE_GENAI_USE_VERTEXAI": "true",
        "GEMINI_API_KEY": "k",  # the Gemini API's key: Vertex does not read it
        "GOOGLE_CLOUD_PROJECT": "acme",
        "GOOGLE_APPLICATION_CREDENTIALS": str(missing),
    }
    result = CliRunner().invoke(app, ["run", str(manifest), "--out", str(tmp_path / "o")], env=env)
    assert result.exit_code == 2
    assert f"Vertex AI: the credentials file {missing}" in result.output


def test_a_vertex_flag_on_the_gemini_route_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a lamp"}])
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--location", "us-central1"]
    result = CliRunner().invoke(app, args, env={"GEMINI_API_KEY": "k"})
    assert result.exit_code == 2
    assert "--location applies to --provider vertex only" in result.output
    assert not out.exists()
