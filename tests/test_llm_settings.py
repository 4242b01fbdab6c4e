"""LLMSettings (explicit > ENGRAM_LLM_* > [llm] of the config file > defaults) and make_llm."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from engram.errors import ConfigurationError
from engram.llm import LLMSettings, OpenAICompatibleLLM, make_llm
from engram.llm import openai as openai_module
from engram.llm import settings as settings_module

DOCS = Path(__file__).resolve().parents[1] / "docs" / "llm.md"


@pytest.fixture(autouse=True)
def _no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGRAM_CONFIG", raising=False)
    for name in LLMSettings.model_fields:
        monkeypatch.delenv(f"ENGRAM_LLM_{name.upper()}", raising=False)


def test_defaults_mean_no_llm() -> None:
    settings = LLMSettings.load()
    assert settings.base_url is None
    assert make_llm(settings) is None


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("ENGRAM_LLM_MODEL", "qwen2.5:7b")
    monkeypatch.setenv("ENGRAM_LLM_API_KEY", "sk-env-secret")
    monkeypatch.setenv("ENGRAM_LLM_RESPONSE_FORMAT", "json_object")
    monkeypatch.setenv("ENGRAM_LLM_TIMEOUT", "12.5")
    settings = LLMSettings.load()
    assert settings.timeout == 12.5
    assert "sk-env-secret" not in repr(settings)
    llm = make_llm(settings)
    assert isinstance(llm, OpenAICompatibleLLM)
    with llm:
        assert llm.name == "openai:qwen2.5:7b"
        assert llm.response_format == "json_object"
        assert "sk-env-secret" not in repr(llm)


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "engram.toml"
    config.write_text(
        'db = "x.db"\n[llm]\nbase_url = "http://file:1/v1"\nmodel = "file-model"\n'
        "max_retries = 5\ntimeout = 9\n"
    )
    monkeypatch.setenv("ENGRAM_CONFIG", str(config))
    monkeypatch.setenv("ENGRAM_LLM_MODEL", "env-model")
    monkeypatch.setenv("ENGRAM_LLM_TIMEOUT", "7")
    settings = LLMSettings.load(timeout=3.0, max_attempts=None)
    assert settings.base_url == "http://file:1/v1"  # file
    assert settings.model == "env-model"  # env over file
    assert settings.timeout == 3.0  # explicit over env
    assert settings.max_retries == 5
    assert settings.max_attempts == 3  # None: not given, the default
    assert LLMSettings.load(config=str(config), model="mine").model == "mine"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[llm]\nmax_retries = -1\n", "max_retries"),
        ("[llm]\nresponse_format = 'xml'\n", "response_format"),
        ("[llm]\nbase_urll = 'http://x/v1'\n", "base_urll"),
        ("llm = 3\n", "not a table"),
        ("[llm\n", "cannot read"),
    ],
)
def test_bad_settings(tmp_path: Path, content: str, problem: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigurationError, match=problem):
        LLMSettings.load(config=str(config))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        LLMSettings.load(config=str(tmp_path / "none.toml"))


def test_make_llm_needs_a_model_and_a_url() -> None:
    with pytest.raises(ConfigurationError, match="no model"):
        make_llm(LLMSettings(base_url="http://localhost:8000/v1"))
    with pytest.raises(ConfigurationError, match="invalid LLM base URL"):
        make_llm(LLMSettings(base_url="localhost:8000", model="m"))
    assert make_llm(LLMSettings(base_url="  ", model="m")) is None


def test_response_format_literal_is_the_clients() -> None:
    assert get_args(settings_module.ResponseFormat) == get_args(openai_module.ResponseFormat)


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for name in LLMSettings.model_fields:
        assert re.search(rf"`ENGRAM_LLM_{name.upper()}`", text), name
