# syntax=docker/dockerfile:1
# graphile-py worker image: `docker build -t graphile-py .`
#
# The entrypoint is the `graphile-py` command; the default command is `worker`, configured
# by the environment (docs/configuration.md): DATABASE_URL, GRAPHILE_PY_TASKS,
# GRAPHILE_PY_JOBS, GRAPHILE_PY_MAX_POOL_SIZE, GRAPHILE_PY_LISTEN_URL, ... Run the
# dashboard from the same image with `docker run ... graphile-py dashboard --host 0.0.0.0`.
# Your tasks: replace deploy/app/ (copied to /app, the working directory) with your code,
# or build `FROM graphile-py` and COPY it over. See docs/deployment.md.

# -- build: wheels for graphile-py and its extras, so the runtime stage needs no compiler --
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY graphile_py ./graphile_py
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[metrics,dashboard]"

# -- runtime ---------------------------------------------------------------------------------
FROM python:3.12-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home graphile
# Exactly the wheels built above, mounted for this step only (BuildKit) so that no layer
# keeps a copy of them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl
WORKDIR /app
COPY --chown=root:root deploy/app/ /app/
USER 10001:10001
# The metrics port serves /metrics, /healthz (liveness) and /readyz (readiness).
# shutdown_timeout (25 s) stays below the runtime's grace period: Kubernetes' default is
# 30 s (deploy/kubernetes/worker.yaml sets 45 s); Docker's is 10 s, so compose.yaml sets
# stop_grace_period.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    GRAPHILE_PY_TASKS=tasks:tasks \
    GRAPHILE_PY_LOG_FORMAT=json \
    GRAPHILE_PY_METRICS_PORT=9808 \
    GRAPHILE_PY_METRICS_HOST=0.0.0.0 \
    GRAPHILE_PY_SHUTDOWN_TIMEOUT=25
EXPOSE 9808
STOPSIGNAL SIGTERM
ENTRYPOINT ["graphile-py"]
CMD ["worker"]
