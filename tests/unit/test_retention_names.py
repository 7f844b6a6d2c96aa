"""Retention has one verb per level (the table is in notifyq/engine/maintenance.py): the
stage applies retention, the store deletes ended tasks and drops history days, and only the
SQL, whose function an applied migration created, keeps the word "prune"."""

from __future__ import annotations

from notifyq import sql, store
from notifyq.engine import maintenance


def test_each_level_names_what_it_does() -> None:
    assert callable(maintenance.serve_retention) and callable(maintenance.apply_retention)
    assert callable(store.delete_ended_before) and callable(store.drop_history_days)
    python_names = [*vars(maintenance), *vars(store)]
    assert [n for n in python_names if "prune" in n.lower()] == []


def test_the_sql_keeps_its_names() -> None:
    assert {"prune", "prune_history"} <= set(sql.queries)
    assert "notifyq.prune_event_partitions" in sql.queries["prune_history"]
