"""``engram reembed``: re-index a whole database with another embedder (docs/embedders.md,
"Switching models")."""

from __future__ import annotations

import dataclasses
import sys
import time

import click

from engram import Memory
from engram.cli.app import App, common_options, pass_app
from engram.config import make_embedder

__all__ = ["register"]

EVERY = 2.0  # seconds between progress lines


@click.command("reembed")
@click.option(
    "--to", "spec", required=True, metavar="SPEC",
    help="The new embedder: bundled | onnx | st:NAME_OR_PATH | openai:MODEL | hash[:DIM].",
)  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@common_options
@pass_app
def reembed_command(app: App, spec: str, quiet: bool) -> None:
    """Re-index every record (all users) with another embedder, swapped in at once.

    The new vectors are made while the database stays usable, then replace the old ones in
    one transaction: searches never mix two models. Restart servers and other programs on the
    database afterwards with the new --embedder (until then their adds and searches fail
    with a clear error instead of mixing models)."""
    app.local_only("reembed")
    memory = app.memory()
    assert isinstance(memory, Memory)  # local_only: never a Client
    embedder = make_embedder(spec, app.settings)
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if not quiet and (now - shown[0] >= EVERY or done == total):
            shown[0] = now
            print(f"embedded {done} of {total} records", file=sys.stderr, flush=True)

    report = memory.reembed(embedder, progress=progress)
    doc = dataclasses.asdict(report)
    app.emit(
        doc,
        lambda: (
            f"re-indexed {report.records} records with {report.embedder} ({report.dim} "
            f"dimensions): {report.texts} texts embedded in {report.seconds:.1f} s"
        ),
    )


def register(group: click.Group) -> None:
    group.add_command(reembed_command)
