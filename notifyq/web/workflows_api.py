"""The JSON API of workflows: POST /workflows (a chain, group or chord in one transaction)
and GET /batches/{id} (a chord's progress)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response
from quart_schema import document_request, document_response, security_scheme

import notifyq
from notifyq import errors, store
from notifyq.client import Client
from notifyq.producers import workflows
from notifyq.web import models
from notifyq.web.bodies import body, validate
from notifyq.web.context import current
from notifyq.web.replies import ApiError, json_response
from notifyq.web.workflow_models import (
    BatchOut,
    ChordOut,
    CreatedChord,
    CreatedGroup,
    CreatedWorkflow,
    GroupOut,
    NewWorkflow,
)

blueprint = Blueprint("workflows", __name__)

SHAPES = ("chain", "group", "chord")
# Only a chain nests in a chain (it is flattened); deeper bodies are refused before the
# recursion below could run out of stack.
MAX_NESTING = 16


def _refused(message: str) -> ApiError:
    return ApiError(422, "validation_failed", message)


def _items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _refused(f"{where}: expected a list")
    return value


def _node(item: Any, where: str, depth: int) -> Any:
    """A task (POST /tasks' body) or a nested ``{"chain"|"group"|"chord": ...}``."""
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in SHAPES:
        ((shape, value),) = item.items()
        return _shape(shape, value, where, depth + 1)
    return validate(models.NewTask, item).checked()


def _shape(shape: str, value: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_NESTING:
        raise _refused(f"{where}: workflows nest at most {MAX_NESTING} levels")
    if shape == "chain":
        steps = _items(value, f"{where}.chain")
        return notifyq.chain(*[_node(s, f"{where}.chain.{n}", depth) for n, s in enumerate(steps)])
    if shape == "group":
        tasks = _items(value, f"{where}.group")
        return notifyq.group([_node(t, f"{where}.group.{n}", depth) for n, t in enumerate(tasks)])
    if not isinstance(value, dict) or set(value) != {"group", "callback"}:
        raise _refused(f'{where}.chord: expected {{"group": [tasks], "callback": task}}')
    tasks = _items(value["group"], f"{where}.chord.group")
    members = [_node(t, f"{where}.chord.group.{n}", depth) for n, t in enumerate(tasks)]
    return notifyq.chord(
        notifyq.group(members), _node(value["callback"], f"{where}.chord.callback", depth)
    )


def _out(added: workflows.Added) -> CreatedWorkflow | CreatedGroup | CreatedChord:
    def step(ids: workflows.StepIds) -> int | GroupOut | ChordOut:
        if isinstance(ids, int):
            return ids
        if isinstance(ids, workflows.ChordIds):
            return ChordOut(
                members=list(ids.members), batch_id=ids.batch_id, callback_id=ids.callback_id
            )
        return GroupOut(members=list(ids.members))

    if isinstance(added, workflows.ChainIds):
        return CreatedWorkflow(ids=list(added.ids), steps=[step(s) for s in added.steps])
    if isinstance(added, workflows.ChordIds):
        return CreatedChord(
            ids=list(added.ids),
            members=list(added.members),
            batch_id=added.batch_id,
            callback_id=added.callback_id,
        )
    return CreatedGroup(ids=list(added.ids), members=list(added.members))


@blueprint.post("/workflows")
@document_request(NewWorkflow)
@document_response(CreatedWorkflow, 201)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 413)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def create_workflow() -> Response:
    """Add a chain, a group or a chord in one statement: 201 with every id."""
    new = await body(NewWorkflow)
    given = [s for s in SHAPES if getattr(new, s) is not None]
    if len(given) != 1:
        raise _refused(f"give one of chain, group or chord, got {', '.join(given) or 'none'}")
    try:
        workflow = _shape(given[0], getattr(new, given[0]), "(body)")
        added = await Client(current().database).enqueue_workflow(workflow)
    except (errors.InvalidTask, errors.InvalidWorkflow) as exc:
        raise _refused(str(exc)) from None
    except TypeError as exc:  # an item that is not an object
        raise _refused(str(exc)) from None
    except errors.QueryError as exc:
        # What only the database can tell: a parent (after) that does not exist or is not
        # an earlier task (tasks_depends_on_valid). The statement added nothing.
        if exc.sqlstate and exc.sqlstate[:2] in ("22", "23"):
            first_line = str(exc).splitlines()[0]
            raise _refused(f"the database refused the workflow: {first_line}") from None
        raise
    return json_response(_out(added), 201)


@blueprint.get("/batches/<int:batch_id>")
@document_response(BatchOut)
@document_response(models.ErrorOut, 404)
async def get_batch(batch_id: int) -> Response:
    """A batch's progress (total, done, failed, remaining) and its callback."""
    info = None
    if batch_id <= models.BIGINT_MAX:
        info = await store.batch_progress(current().database, batch_id)
    if info is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    return json_response(BatchOut.from_info(info))
