"""The HTTP side: JSON API, status page, server-sent events and metrics (Quart-Trio on
Hypercorn), run in the same trio process as the workers or alone (``notifyq web``)."""

from notifyq.web.bind import check_bind
from notifyq.web.context import Context
from notifyq.web.server import serve_http

__all__ = ["Context", "check_bind", "serve_http"]
