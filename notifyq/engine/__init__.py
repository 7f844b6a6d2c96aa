"""The engine of one notifyq process, one module per stage:

    INSERT ─▶ notifyq.tasks ─trigger─▶ NOTIFY notifyq
                                          │
     listener ──rows appeared──▶ claimer ──jobs──▶ runner (workers) ──outcomes──▶ writer
       (LISTEN, probe)            (claim) ◀── next rows, through a ClaimHandoff ── (fenced finish)
     leases: one heartbeat for every held attempt      maintenance: reaper, retention, partitions
     scheduler: sleeps until the next due schedule tick, fires the due ones

The stages share only the in-flight ledger (``ledger.py``: each field has one owner) and the
ports of ``ports.py``: the writer claims the next rows through a ``ClaimHandoff`` that the
service hands it, never the claimer itself. The pure decisions live beside them
(``verdict.py``: what an attempt's result means; ``limited.py``: which limited queues a claim
may take), ``capacity.py`` says which kinds a claim may take, ``transactions.py`` holds a
transactional handler's connection and commits its ``done`` with its writes (the runner uses
it; the writer only records those outcomes), and ``service.py`` holds the nursery that wires
the stages and orders the shutdown.

The engine never imports the web, the CLI or the benchmarks (import-linter checks it).
"""
