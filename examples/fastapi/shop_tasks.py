"""The example's worker side: a typed task, run by ``notifyq worker --app shop_tasks:app``."""

from __future__ import annotations

import notifyq

app = notifyq.App()


@app.task(kind="shop.confirm")
def confirm(order_id: int, item: str, quantity: int = 1) -> str:
    return f"order {order_id}: {quantity} x {item} confirmed"
