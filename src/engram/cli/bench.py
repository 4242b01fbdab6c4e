"""``engram bench``: the benchmark commands. A stub for now: :func:`register` adds nothing.

The benchmark commands go here (``engram bench locomo ...``, ``engram bench longmemeval ...``),
calling the runner in :mod:`engram.bench`. To add them, define a click group and register it::

    @click.group("bench")
    def bench_group() -> None:
        \"\"\"Run retrieval benchmarks.\"\"\"

    @bench_group.command("locomo")
    @common_options          # from engram.cli.app: --db, --embedder, --pretty
    @pass_app                # the App: app.settings, app.memory(), app.emit(doc, pretty)
    def locomo_command(app: App, ...) -> None: ...

    def register(group: click.Group) -> None:
        group.add_command(bench_group)

and document every new command and option in ``docs/cli.md`` (``tests/test_docs.py`` checks).
Import heavy modules inside the command functions, so that ``engram --help`` stays fast.
"""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add the ``bench`` commands to the ``engram`` group (none yet)."""
    del group
