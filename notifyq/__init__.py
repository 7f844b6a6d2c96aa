"""notifyq: a PostgreSQL task queue woken by NOTIFY, run on trio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("notifyq")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from notifyq.app import App, Task
from notifyq.client import Client, open_client
from notifyq.errors import Fail, NotifyqError, PayloadError, Retry, TaskNotFound

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
