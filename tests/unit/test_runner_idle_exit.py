"""When a runner told to stop after some idle seconds may stop: never before its group
join has assigned partitions (the CI flake where a slow join looked like no input)."""

from __future__ import annotations

from services.runtime.processor import FIRST_ASSIGNMENT_WAIT_S, idle_exit_due


def test_no_exit_while_the_group_join_is_slow() -> None:
    assert not idle_exit_due(now=10.0, idle_since=0.0, started=0.0, assigned_at=None, idle_s=3)
    assert idle_exit_due(
        now=FIRST_ASSIGNMENT_WAIT_S, idle_since=0.0, started=0.0, assigned_at=None, idle_s=3
    )


def test_idle_counts_from_the_assignment_then_from_the_last_input() -> None:
    assert not idle_exit_due(now=12.0, idle_since=0.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert idle_exit_due(now=13.0, idle_since=0.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert not idle_exit_due(now=16.0, idle_since=14.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert idle_exit_due(now=17.0, idle_since=14.0, started=0.0, assigned_at=10.0, idle_s=3)
