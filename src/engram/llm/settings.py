"""LLM settings: explicit values, then ``ENGRAM_LLM_*`` environment variables, then the ``[llm]``
table of an optional TOML config file (``config=PATH`` or ``ENGRAM_CONFIG``), then the defaults
(the same order as :class:`engram.server.settings.ServerSettings`). The table is in docs/llm.md.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from engram.errors import ConfigurationError
from engram.llm.base import LLM

__all__ = ["CONFIG_TABLE", "LLMSettings", "make_llm"]

#: engram.llm.openai.ResponseFormat (repeated so these settings load without httpx).
ResponseFormat = Literal["auto", "json_schema", "json_object"]

CONFIG_VARIABLE = "ENGRAM_CONFIG"
#: The config file's table that holds these settings.
CONFIG_TABLE = "llm"


class LLMSettings(BaseSettings):
    """Which endpoint and model answer, and how patiently. Without ``base_url`` there is no LLM
    (:func:`make_llm` gives ``None``). Build with :meth:`load`, or directly (explicit values and
    the environment only)."""

    model_config = SettingsConfigDict(
        env_prefix="ENGRAM_LLM_", extra="forbid", frozen=True, env_ignore_empty=True
    )

    base_url: str | None = None  # e.g. http://localhost:11434/v1
    model: str | None = None
    api_key: SecretStr | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    response_format: ResponseFormat = "auto"
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0

    _file_values: ClassVar[dict[str, Any]] = {}

    @field_validator("base_url", "model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._file_values:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=dict(cls._file_values)))
        return tuple(sources)

    @classmethod
    def load(cls, config: str | None = None, **values: Any) -> LLMSettings:
        """Settings from ``values`` (``None``: not given), the environment and the ``[llm]``
        table of the TOML file ``config`` (default: ``$ENGRAM_CONFIG``, else none). Raises
        :class:`~engram.errors.ConfigurationError`."""
        path = config or os.environ.get(CONFIG_VARIABLE, "").strip() or None
        target: type[LLMSettings] = cls
        if path is not None:
            table = _read_table(path)
            if table:
                target = type("FileLLMSettings", (cls,), {"_file_values": table})
        given = {k: v for k, v in values.items() if v is not None}
        try:
            return target(**given)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc, path)) from None


def _read_table(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigurationError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read config file {path!r}: {exc}") from None
    table = data.get(CONFIG_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"config file {path!r}: [{CONFIG_TABLE}] is not a table")
    return table


def _explain(exc: ValidationError, path: str | None) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}: {error['msg']}")
    origin = f" (values, ENGRAM_LLM_* variables or [{CONFIG_TABLE}] of {path})" if path else ""
    return "invalid LLM settings" + origin + ": " + "; ".join(parts)


def make_llm(settings: LLMSettings) -> LLM | None:
    """The LLM the settings describe: an :class:`~engram.llm.OpenAICompatibleLLM`, or ``None``
    when no ``base_url`` is set. Raises :class:`~engram.errors.ConfigurationError` for a base URL
    without a model, or one that is not an http(s) URL."""
    if settings.base_url is None:
        return None
    if settings.model is None:
        raise ConfigurationError(
            "an LLM base URL is set but no model: set ENGRAM_LLM_MODEL (or model in [llm])"
        )
    from engram.llm.openai import OpenAICompatibleLLM

    key = settings.api_key.get_secret_value() if settings.api_key else None
    return OpenAICompatibleLLM(
        settings.base_url,
        settings.model,
        api_key=key,
        timeout=settings.timeout,
        response_format=settings.response_format,
        max_retries=settings.max_retries,
        max_attempts=settings.max_attempts,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
    )
