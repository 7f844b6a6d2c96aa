"""A Task's workflow reads are made on the first ask, never when the Task is built."""

from __future__ import annotations

import pytest

from notifyq import errors
from notifyq.app import Task


async def test_a_task_reads_nothing_until_asked() -> None:
    # No database at all: building it, comparing it and showing it read nothing.
    task = Task(7, "default", "k", None, 1, 3)
    assert task == Task(7, "default", "k", None, 1, 3)
    assert "database" not in repr(task)
    with pytest.raises(errors.WorkflowError, match="task 7 has no database to read"):
        await task.parents()


def test_workflow_error_fails_the_task_without_retry() -> None:
    assert issubclass(errors.WorkflowError, errors.Fail)
