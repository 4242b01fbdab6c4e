"""Server settings: command-line flags, then ``ENGRAM_*`` environment variables, then an optional
TOML config file (``--config PATH`` or ``ENGRAM_CONFIG``), then the defaults. The full table is in
docs/server.md; every field here has a line there (a test checks it)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from engram.config import Settings
from engram.errors import ConfigurationError
from engram.store.postgres import is_postgres_url
from engram.types import id_problem

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_MCP_USER",
    "ServerSettings",
    "is_loopback",
    "user_data_db",
]

CONFIG_VARIABLE = "ENGRAM_CONFIG"
DEFAULT_MCP_USER = "default"


class ServerSettings(BaseSettings):
    """How ``engram serve`` and ``engram mcp`` run. Build with :meth:`load`."""

    model_config = SettingsConfigDict(
        env_prefix="ENGRAM_", extra="forbid", frozen=True, env_ignore_empty=True
    )

    # the memory (the same as the command line's global options)
    db: str = "engram.db"
    embedder: str = "bundled"
    embed_cache: str | None = None
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    query_prompt: str | None = None  # st: models only (None: the model's own prompts)
    document_prompt: str | None = None
    # the REST server
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    keys: str | None = None  # the API key file; default: the database path + ".keys"
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    max_messages: Annotated[int, Field(ge=1, le=100_000)] = 1000
    request_timeout: Annotated[float, Field(gt=0)] = 30.0
    shutdown_timeout: Annotated[float, Field(ge=0)] = 30.0
    keep_alive: Annotated[float, Field(ge=1, le=3600)] = 75.0
    threads: Annotated[int, Field(ge=1, le=1024)] = 32
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    batch_max: Annotated[int, Field(ge=1, le=4096)] = 64
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    # the LLM layer (the LLM itself: ENGRAM_LLM_* or the [llm] table, docs/llm.md)
    extract_default: Literal["sync", "background", "off"] | None = None
    worker_interval: Annotated[float, Field(ge=0, le=86_400)] = 5.0
    # the MCP server
    mcp_user: str = DEFAULT_MCP_USER
    mcp_allow_any_user: bool = False
    mcp_allow_forget: bool = False
    mcp_transport: Literal["stdio", "http"] = "stdio"
    mcp_port: Annotated[int, Field(ge=0, le=65535)] = 8766

    _config_path: str | None = PrivateAttr(None)

    @field_validator("mcp_user")
    @classmethod
    def _user(cls, value: str) -> str:
        problem = id_problem(value)
        if problem is not None:
            raise ValueError(f"mcp_user {problem}")
        return value

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
        if settings_cls.model_config.get("toml_file"):
            sources.append(_ServerToml(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, config: str | None = None, **flags: Any) -> ServerSettings:
        """Settings from ``flags`` (``None`` values: not given), the environment and the config
        file ``config`` (default: ``$ENGRAM_CONFIG``, else none). Raises ConfigurationError."""
        path = config or os.environ.get(CONFIG_VARIABLE, "").strip() or None
        target: type[ServerSettings] = cls
        if path is not None:
            if not Path(path).is_file():
                raise ConfigurationError(f"config file {path!r} does not exist")
            conf = SettingsConfigDict(**{**cls.model_config, "toml_file": path})
            target = type("FileServerSettings", (cls,), {"model_config": conf})
        given = {k: v for k, v in flags.items() if v is not None}
        try:
            loaded = target(**given)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc, path)) from None
        except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
            raise ConfigurationError(f"cannot read config file {path!r}: {exc}") from None
        loaded._config_path = path
        return loaded

    @property
    def config_path(self) -> str | None:
        """The config file these settings were loaded from (its ``[llm]`` table is the LLM's)."""
        return self._config_path

    def core(self) -> Settings:
        """The library's settings (what :func:`engram.config.make_embedder` needs)."""
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else None
        return Settings(
            db=self.db, embedder=self.embedder, openai_base_url=self.openai_base_url,
            openai_api_key=key, embed_cache=self.embed_cache, query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
        )  # fmt: skip

    @property
    def keys_path(self) -> str | None:
        """Where API keys live: ``keys``, else next to the database (none for ``:memory:``)."""
        if self.keys:
            return self.keys
        if self.db == ":memory:" or is_postgres_url(self.db):  # (no file to put them next to)
            return None
        return f"{self.db}.keys"


class _ServerToml(TomlConfigSettingsSource):
    """The config file without its ``[llm]`` table, which holds the LLM's settings
    (:class:`engram.llm.LLMSettings`), not the server's."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        values.pop("llm", None)
        return values


def _explain(exc: ValidationError, path: str | None) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}: {error['msg']}")
    origin = f" (flags, ENGRAM_* variables or {path})" if path else ""
    return "invalid settings" + origin + ": " + "; ".join(parts)


def user_data_db(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user database of ``engram mcp`` when none is configured:
    ``$XDG_DATA_HOME/engram/engram.db``, else ``~/.local/share/engram/engram.db``. Not the
    working directory, which is whatever the MCP host started the server in."""
    env = os.environ if environ is None else environ
    data = env.get("XDG_DATA_HOME", "").strip()
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "engram" / "engram.db"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
