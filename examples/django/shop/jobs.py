"""Tasks outside a `tasks` module: the worker finds them through the backend's MODULES."""

from django.tasks import task


@task
def tally(*numbers: int) -> int:
    return sum(numbers)
