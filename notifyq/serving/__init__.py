"""A notifyq process's lifecycle, apart from the command line that asks for it.

The CLI parses flags, builds :class:`~notifyq.settings.Settings` and calls one function of
this package (as hypercorn's ``__main__`` builds a config and ``run.py`` owns the signals
and the workers):

- :mod:`~notifyq.serving.run`: the stop signals, and what a long-running command runs until
  they come: one process, or the supervisor of several;
- :mod:`~notifyq.serving.startup`: opening the database (waiting while it cannot be
  reached) and migrating or checking its schema;
- :mod:`~notifyq.serving.process`: what one process runs: the workers, the HTTP side, or both;
- :mod:`~notifyq.serving.supervisor`: ``--processes N``: the children, their restarts;
- :mod:`~notifyq.serving.embedded`: the embedded PostgreSQL, its lifetime and its watchdog.

Importing this package costs nothing: the engine and the HTTP side (Quart, Hypercorn) are
imported only by a command that serves (tests/unit/test_cli_imports.py).
"""
