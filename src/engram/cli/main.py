"""The ``engram`` entry point: the command group, the registry of command modules, and the one
place where errors become messages and exit codes.

Exit codes: ``0`` success; ``1`` the operation failed (any :class:`~engram.EngramError`: invalid
input, unknown record, missing or malformed input file, store or embedder failure; and a missing
database); ``2`` the command line is wrong (unknown command or option, missing or invalid option
value, conflicting options, ``forget`` without ``--yes``); ``130`` interrupted. Every error is
one line on stderr, ``engram: error: <message>``, with control characters and lone surrogates
(what a non-UTF-8 byte of the command line becomes) escaped.

Bad input never prints a traceback. An unexpected exception is a bug in Engram: it is reported
as one line too (exit code 1), unless ``ENGRAM_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence

import click

from engram import EngramError, __version__
from engram.cli import bench, llm, mcp, records, reembed, search, serve, write
from engram.cli.app import App, common_options

__all__ = ["REGISTER_COMMANDS", "cli", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_VARIABLE = "ENGRAM_DEBUG"
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")


@click.group(context_settings=CONTEXT, no_args_is_help=False, epilog="Documentation: docs/cli.md")
@click.version_option(__version__, "--version", prog_name="engram")
@common_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Engram: long-term memory for LLM agents.

    Commands print one JSON document to stdout (--pretty: a table instead). Errors are one
    line on stderr; the exit code is 1 when an operation fails, 2 when the command line is
    wrong. --db, --embedder and --pretty go before or after the command name.
    """
    app = ctx.ensure_object(App)
    ctx.call_on_close(app.close)


# The command registry: each module's register(group) adds its commands to `engram`.
REGISTER_COMMANDS: tuple[Callable[[click.Group], None], ...] = (
    write.register,
    search.register,
    records.register,
    reembed.register,
    bench.register,
    llm.register,
    serve.register,
    mcp.register,
)
for _register in REGISTER_COMMANDS:
    _register(cli)


def one_line(message: str) -> str:
    """``message`` on one line: whitespace runs become one space, lone surrogates and other
    control characters are escaped (``\\udcff``, ``\\x1b``)."""
    text = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _fail(message: str, code: int) -> int:
    click.echo(f"engram: error: {one_line(message)}", err=True)
    return code


def _debug() -> bool:
    # Read here, not in engram.config.Settings: it decides how main() reports a crash, and
    # must work even when the settings cannot be built.
    return os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def _internal_error(exc: Exception) -> int:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    hint = f"this is a bug in engram; set {DEBUG_VARIABLE}=1 to see the traceback"
    return _fail(f"internal error: {what[:500]} ({hint})", 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``engram`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="engram", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        return _fail(exc.format_message() + hint, exc.exit_code)
    except click.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    except EngramError as exc:
        return _fail(str(exc), 1)
    except click.Abort:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `engram list ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # not bad input (that is an EngramError or a click error): a bug
        if _debug():
            raise
        return _internal_error(exc)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
