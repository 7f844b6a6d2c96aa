"""The benchmarks behind `notifyq bench` (the commands live in :mod:`notifyq.cli.bench`).

- :mod:`~notifyq.bench.common`: the bench statements (``bench.sql``), scratch databases,
  an in-process service, percentiles and progress lines.
- :mod:`~notifyq.bench.inprocess`: ``latency`` and ``drain`` against an in-process service.
- :mod:`~notifyq.bench.load`: ``insert``, ``backlog``, ``rss`` and the drain with several
  ``notifyq serve`` subprocesses.
- :mod:`~notifyq.bench.peers`: PgQueuer and procrastinate measured the same way (each run
  as ``python -m notifyq.bench.peers``).
- :mod:`~notifyq.bench.report`: ``all``: every benchmark, the targets, bench.json/md/png.
- :mod:`~notifyq.bench.scale`: ``scale``: drain throughput of 1, 2, 4... worker processes.
- :mod:`~notifyq.bench.harsh` (with ``harsh_faults``, ``harsh_report``, ``worker_processes`` and
  ``own_server``): ``harsh``: the harsh-database scenarios with an exact per-task ledger.
- :mod:`~notifyq.bench.soak`: ``soak``: a steady load sampled every interval.

Nothing here imports :mod:`notifyq.cli`; only the CLI imports this package.
"""
