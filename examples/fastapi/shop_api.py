"""A FastAPI app that enqueues in its request's transaction and waits for results.

    DATABASE_URL=postgresql://... uvicorn shop_api:api             # the web side
    DATABASE_URL=postgresql://... notifyq worker --app shop_tasks:app   # the workers

``POST /orders`` (asyncpg) and ``POST /orders/sqlalchemy`` (SQLAlchemy ``AsyncSession``)
insert an order and enqueue its confirmation in one transaction: both rows or neither (a
refused order rolls back its task too). ``GET /tasks/{id}?wait_s=10`` waits for the task to
end (``notifyq.wait``: LISTEN on a pool connection, no polling) and returns its outcome.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from shop_tasks import confirm
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import notifyq


class Order(BaseModel):
    item: str
    quantity: int = 1


def create_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
        engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, item text NOT NULL, quantity int NOT NULL CHECK (quantity > 0))"
            )
        api.state.pool = pool
        api.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await pool.close()
            await engine.dispose()

    api = FastAPI(lifespan=lifespan)

    async def session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.app.state.sessions() as s:
            yield s

    @api.post("/orders")
    async def place_order(order: Order, request: Request) -> dict[str, int]:
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            order_id = await conn.fetchval(
                "INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id",
                order.item,
                order.quantity,
            )
            task_id = await confirm.enqueue(
                conn, order_id=order_id, item=order.item, quantity=order.quantity
            )
            if order.item == "unobtainium":
                # Raised inside the transaction: the order and its task roll back together.
                raise HTTPException(409, "out of stock")
        return {"order": order_id, "task": task_id}

    @api.post("/orders/sqlalchemy")
    async def place_order_sqlalchemy(
        order: Order, s: Annotated[AsyncSession, Depends(session)]
    ) -> dict[str, int]:
        async with s.begin():
            order_id = (
                await s.execute(
                    text("INSERT INTO orders (item, quantity) VALUES (:item, :q) RETURNING id"),
                    {"item": order.item, "q": order.quantity},
                )
            ).scalar_one()
            task_id = await confirm.enqueue(s, order_id=order_id, item=order.item)
        return {"order": order_id, "task": task_id}

    @api.get("/tasks/{task_id}")
    async def task_outcome(task_id: int, request: Request, wait_s: float = 10) -> dict[str, Any]:
        async with request.app.state.pool.acquire() as conn:
            try:
                outcome = await notifyq.wait(conn, task_id, timeout_s=wait_s)
            except notifyq.TaskNotFound:
                raise HTTPException(404, f"task {task_id} does not exist") from None
            except notifyq.WaitTimeout:
                raise HTTPException(
                    504, f"task {task_id} did not end within {wait_s:g} s"
                ) from None
        return {"status": outcome.status, "result": outcome.result, "error": outcome.error}

    return api


if "DATABASE_URL" in os.environ:
    api = create_app(os.environ["DATABASE_URL"])
