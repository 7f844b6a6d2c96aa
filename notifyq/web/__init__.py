"""The HTTP side: JSON API, status page, server-sent events and metrics (Quart-Trio on
Hypercorn), run in the same trio process as the workers or alone (``notifyq web``)."""
