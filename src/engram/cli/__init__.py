"""The ``engram`` command line: a thin client of the public API (see ``docs/cli.md``).

Each command module has a ``register(group)`` function; ``engram.cli.main.REGISTER_COMMANDS``
lists them (``engram.cli.bench.register`` is already there, adding nothing yet).
"""
