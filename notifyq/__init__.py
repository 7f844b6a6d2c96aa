"""notifyq: a PostgreSQL task queue woken by NOTIFY, run on trio."""

from notifyq.app import App, Task
from notifyq.client import Client, open_client
from notifyq.errors import Fail, NotifyqError, PayloadError, Retry, TaskNotFound
from notifyq.version import __version__

__all__ = [
    "App",
    "Client",
    "Fail",
    "NotifyqError",
    "PayloadError",
    "Retry",
    "Task",
    "TaskNotFound",
    "__version__",
    "open_client",
]
