"""The claimer's limited-queue bookkeeping (a pure policy): turns, held queues, backlog,
stale limits, queues that stop being limited."""

from __future__ import annotations

import math
from collections import Counter

from notifyq.engine.limited import ClaimPlan, LimitedQueues

INF = math.inf


def read(
    queues: tuple[str, ...] = ("a", "b", "c", "plain"),
    limited: frozenset[str] = frozenset({"a", "b", "c"}),
) -> LimitedQueues:
    """A policy over ``queues`` whose limits were read: ``limited`` have limits."""
    policy = LimitedQueues(queues)
    policy.read(limited)
    return policy


def claim(
    policy: LimitedQueues,
    *,
    now: float = 0.0,
    want: int = 10,
    free_workers: int = 10,
    held_s: dict[str, float] | None = None,
    took: list[str] | None = None,
) -> ClaimPlan:
    """Plan a claim and record what came back; the plan it made."""
    plan = policy.plan(now=now, want=want, free_workers=free_workers)
    policy.claimed(plan, now=now, held_s=held_s or {}, took=took or [])
    return plan


# --- reading the limits ---------------------------------------------------------------------


def test_limits_are_stale_until_read_and_only_ours_count() -> None:
    policy = LimitedQueues(("a", "plain"))
    assert policy.stale
    assert policy.limited == frozenset()
    assert policy.read({"a", "elsewhere"}) == {"a"}
    assert not policy.stale
    assert policy.limited == {"a"}


def test_a_process_without_limited_queues_sends_everything_to_the_plain_claim() -> None:
    plan = read(limited=frozenset()).plan(now=0.0, want=5, free_workers=5)
    assert plan == ClaimPlan((), 0, ("a", "b", "c", "plain"), 5)


def test_the_plain_claim_gets_the_unlimited_queues_in_their_order() -> None:
    plan = read(queues=("x", "a", "y", "b"), limited=frozenset({"a", "b"})).plan(
        now=0.0, want=5, free_workers=5
    )
    assert plan.unlimited == ("x", "y")
    assert set(plan.limited) == {"a", "b"}


def test_a_queue_no_longer_limited_or_gone_is_dropped_and_no_longer_held() -> None:
    policy = read()
    claim(policy, now=1.0, held_s={"a": 5.0, "b": INF})
    assert policy.held == {"a": 6.0, "b": INF}
    assert policy.read({"a"}) == {"a"}  # b's limits were cleared, c's row deleted
    assert policy.held == {"a": 6.0}
    plan = policy.plan(now=2.0, want=5, free_workers=5)
    assert plan.unlimited == ("b", "c", "plain")
    assert plan.limited == ()  # a is still held


def test_a_limits_notification_makes_them_stale_and_frees_that_queue() -> None:
    policy = read()
    claim(policy, held_s={"a": INF, "b": 30.0})
    policy.limits_changed("b")
    assert policy.stale
    assert policy.held == {"a": INF}
    policy.read({"a", "b", "c"})
    assert not policy.stale


def test_a_limits_notification_for_another_queue_changes_nothing() -> None:
    policy = read()
    claim(policy, held_s={"a": INF})
    policy.limits_changed("elsewhere")
    assert not policy.stale
    assert policy.held == {"a": INF}


def test_the_sweep_reads_the_limits_again_and_holds_nothing_back() -> None:
    policy = read()
    claim(policy, held_s={"a": INF, "b": 30.0})
    policy.swept()
    assert policy.stale
    assert policy.held == {}
    assert policy.next_token_at() == INF


# --- turns ----------------------------------------------------------------------------------


def test_limited_queues_take_turns_at_being_first() -> None:
    policy = read()
    firsts = [claim(policy).limited for _ in range(6)]
    # Every claim passes every ready queue, in a rotated order.
    assert all(sorted(order) == ["a", "b", "c"] for order in firsts)
    assert [order[0] for order in firsts] == ["b", "c", "a", "b", "c", "a"]
    assert firsts[0] == ("b", "c", "a")


def test_turns_are_fair_over_many_claims() -> None:
    policy = read(queues=tuple("abcde"), limited=frozenset("abcde"))
    firsts = Counter(claim(policy).limited[0] for _ in range(500))
    assert firsts == dict.fromkeys("abcde", 100)


def test_turns_go_on_while_some_queues_are_held() -> None:
    policy = read()
    claim(policy, now=0.0, held_s={"a": 100.0})
    orders = [claim(policy, now=1.0).limited for _ in range(4)]
    assert all(sorted(order) == ["b", "c"] for order in orders)
    assert {order[0] for order in orders} == {"b", "c"}


# --- held queues ----------------------------------------------------------------------------


def test_a_queue_held_for_a_rate_token_is_skipped_until_its_time() -> None:
    policy = read()
    claim(policy, now=10.0, held_s={"a": 2.0})
    assert policy.held == {"a": 12.0}
    assert policy.next_token_at() == 12.0
    assert "a" not in policy.plan(now=11.9, want=5, free_workers=5).limited
    assert "a" not in policy.due_queues()
    plan = policy.plan(now=12.0, want=5, free_workers=5)
    assert "a" in plan.limited
    # Passed to a claim that did not hold it again: no longer held.
    policy.claimed(plan, now=12.0, held_s={}, took=["a"])
    assert policy.held == {}
    assert policy.next_token_at() == INF


def test_a_queue_held_for_a_slot_waits_for_a_notification() -> None:
    policy = read()
    claim(policy, now=0.0, held_s={"a": INF})
    assert policy.next_token_at() == INF  # no timer: a notification says when
    assert "a" not in policy.plan(now=1e9, want=5, free_workers=5).limited
    policy.notified("a")
    assert "a" in policy.plan(now=0.0, want=5, free_workers=5).limited


def test_a_notification_does_not_free_a_queue_waiting_for_its_rate_token() -> None:
    policy = read()
    claim(policy, now=0.0, held_s={"a": 3.0})
    policy.notified("a")
    policy.notified("plain")
    assert policy.held == {"a": 3.0}


def test_registering_as_waiting_frees_the_queues_held_for_a_slot_only() -> None:
    policy = read()
    claim(policy, now=0.0, held_s={"a": INF, "b": 4.0})
    policy.registered()
    assert policy.held == {"b": 4.0}


def test_the_earliest_rate_token_is_the_next_wake_up() -> None:
    policy = read()
    claim(policy, now=5.0, held_s={"a": INF, "b": 4.0, "c": 1.5})
    assert policy.next_token_at() == 6.5


# --- free workers and the backlog -----------------------------------------------------------


def test_the_limited_claim_takes_rows_for_free_workers_only() -> None:
    policy = read()
    assert policy.plan(now=0.0, want=10, free_workers=3).limited_limit == 3
    assert policy.plan(now=0.0, want=2, free_workers=3).limited_limit == 2
    # More busy attempts than workers (a PREFETCH buffer): none free.
    assert policy.plan(now=0.0, want=10, free_workers=-2).limited_limit == 0


def test_no_free_worker_leaves_a_backlog_of_limited_rows() -> None:
    policy = read()
    plan = claim(policy, want=4, free_workers=0, took=["plain"] * 4)
    assert plan.limited_limit == 0
    assert policy.backlog
    # Meanwhile their due rows wake nobody: the next freed worker claims them.
    assert policy.due_queues() == ["plain"]


def test_a_limited_claim_filled_by_free_workers_leaves_a_backlog() -> None:
    policy = read()
    claim(policy, want=10, free_workers=2, took=["a", "b", "plain"])
    assert policy.backlog


def test_a_limited_claim_that_found_fewer_rows_leaves_none() -> None:
    policy = read()
    claim(policy, want=10, free_workers=2, took=["a", "plain"])
    assert not policy.backlog
    assert policy.due_queues() == ["a", "b", "c", "plain"]


def test_a_limited_claim_bounded_by_the_claim_itself_leaves_none() -> None:
    policy = read()
    claim(policy, want=2, free_workers=5, took=["a", "b"])
    assert not policy.backlog


def test_queues_held_by_their_limits_leave_no_backlog() -> None:
    policy = read()
    claim(policy, want=4, free_workers=0, held_s={"a": INF, "b": INF, "c": 1.0})
    assert not policy.backlog


def test_the_backlog_is_cleared_by_the_next_claim_that_finds_fewer_rows() -> None:
    policy = read()
    claim(policy, want=4, free_workers=0)
    assert policy.backlog
    claim(policy, want=4, free_workers=4, took=["a"])
    assert not policy.backlog
