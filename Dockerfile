# syntax=docker/dockerfile:1
# One image per service, all from this file:
#   docker build --build-arg SERVICE=issue-ingestor -t kafka-platform/issue-ingestor:0.1.0 .
# SERVICE is a directory under services/; the image runs `python -m <package>` (dashes become underscores).
# Installs come only from requirements/lock.txt (hash-checked): the slice the service needs, see
# deploy/docker/install-service.sh and docs/deploy.md.
# pinned by digest: a rebuilt tag cannot change what the image is built from (update tag and digest together)
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY deploy/docker/uv-requirements.txt deploy/docker/
RUN pip install --require-hashes --no-deps -r deploy/docker/uv-requirements.txt
COPY requirements/lock.txt requirements/
COPY deploy/docker/lock_subset.py deploy/docker/install-service.sh deploy/docker/
COPY libs/ libs/
COPY services/ services/
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<dir under services/>" >&2; exit 2; }; \
    deploy/docker/install-service.sh "${SERVICE}" /opt/venv /usr/local/bin/python3

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="kafka-platform ${SERVICE}" \
      org.opencontainers.image.source="deploy/docker (kafka-platform monorepo)"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVICE_NAME=${SERVICE}
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
STOPSIGNAL SIGTERM
CMD ["/opt/venv/bin/service"]
