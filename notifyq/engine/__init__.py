"""The engine of one notifyq process, one module per stage:

    listener ──rows appeared──▶ claimer ──jobs──▶ runner (workers) ──outcomes──▶ writer
                                   ▲                                               │
                                   └──────────── ledger (in-flight attempts) ◀─────┘
    leases (heartbeat), maintenance (reaper, pruner), service (the nursery and shutdown)

The engine never imports the web, the CLI or the benchmarks (import-linter checks it).
"""
