# syntax=docker/dockerfile:1
# The notifyq image: `docker build -t notifyq .` (or `docker compose build`).
#   docker run --rm -e DATABASE_URL=postgresql://... notifyq migrate
#   docker run -e DATABASE_URL=postgresql://... notifyq worker      # or serve, web
# The HTTP roles listen on 0.0.0.0 here, so they need API_TOKEN (or INSECURE_HTTP=true).
# See docs/operations.md.

# --- build: wheels of notifyq and its runtime dependencies (no dev extras) -------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY notifyq ./notifyq
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed, nothing else ---------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    NOTIFYQ_DATA_DIR=/home/notifyq/.notifyq
RUN groupadd --system --gid 10001 notifyq \
    && useradd --system --uid 10001 --gid notifyq --create-home --home-dir /home/notifyq \
        --shell /usr/sbin/nologin notifyq
# Bind-mounted from the build stage: the wheels never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/notifyq-*.whl
USER 10001:10001
WORKDIR /home/notifyq
EXPOSE 8080
# The HTTP roles (serve, web) answer /health with 200 or 503. A worker-only container has
# no HTTP server: compose.yaml gives it `notifyq health` instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
# notifyq handles SIGTERM itself: stop claiming, let running tasks finish (SHUTDOWN_TIMEOUT),
# write every outcome, exit 0. Give it longer than SHUTDOWN_TIMEOUT before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["notifyq"]
CMD ["serve"]
