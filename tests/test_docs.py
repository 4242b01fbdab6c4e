"""docs/cli.md documents every command, option, environment variable and embedder spec (after
sqlite-utils' documentation tests): add a command or option and this fails until it is written
up. A command ``engram a b`` is documented under a heading ``## engram a b`` (any level)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import engram.config
from engram.cli.main import cli
from engram.config import EMBEDDER_SPECS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
# documented under "Global options"
COMMON = {
    "--db", "--embedder", "--embed-cache", "--server", "--api-key", "--llm", "--llm-model",
    "--pretty", "--help", "-h",
}  # fmt: skip


def sections() -> dict[str, str]:
    """Heading (without the #s) -> the text up to the next heading of the same or a higher level."""
    text = DOCS.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", lambda m: m.group(0).replace("#", "\\#"), text, flags=re.S)
    found: dict[str, str] = {}
    heads = list(re.finditer(r"^(#+) (.+)$", text, flags=re.M))
    for i, head in enumerate(heads):
        level = len(head.group(1))
        end = next((h.start() for h in heads[i + 1 :] if len(h.group(1)) <= level), len(text))
        found[head.group(2).strip()] = text[head.end() : end].replace("\\#", "#")
    return found


def commands(
    group: click.Group = cli, prefix: str = "engram"
) -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


COMMANDS = dict(commands())


def test_there_are_commands() -> None:
    assert {"engram add", "engram import", "engram search", "engram forget"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_is_documented(path: str) -> None:
    assert path in sections(), f"docs/cli.md has no '## {path}' section"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_options_are_documented(path: str) -> None:
    section = sections().get(path, "")
    for param in COMMANDS[path].params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        for opt in set(param.opts) - COMMON:
            assert f"`{opt}" in section, f"{opt} of '{path}' is not documented in its section"


def test_global_options_are_documented() -> None:
    section = sections()["Global options"]
    for param in cli.params:
        for opt in param.opts:
            assert f"`{opt}" in section, f"global option {opt} is not documented"


def test_environment_variables_are_documented() -> None:
    source = Path(engram.config.__file__).read_text(encoding="utf-8")
    names = set(re.findall(r"\bENGRAM_[A-Z_]*[A-Z]\b", source))
    assert names
    section = sections()["Environment variables"]
    for name in names:
        assert f"`{name}`" in section


def test_embedder_specs_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for spec, _ in EMBEDDER_SPECS:
        assert spec.split("[")[0] in text
