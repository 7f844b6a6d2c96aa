"""The example's tasks: standard Django ``@task`` functions, run by ``notifyq_worker``."""

from django.tasks import TaskContext, task


@task(queue_name="emails", priority=10)
def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def refuse(reason: str) -> None:
    raise ValueError(reason)


@task(takes_context=True)
def which_attempt(context: TaskContext) -> int:
    return context.attempt


@task
async def shout(text: str) -> str:
    return text.upper()
