# drs-poller's container image.
#
#   docker build -t drs-poller .                  the production image (the last stage)
#   docker build --target local -t drs-poller:local .   plus the [local] extra (moto server),
#                                                 for docker-compose.yml and `drs-poller demo`
#
# Nothing here is architecture-specific: every dependency installs from a wheel
# (--only-binary=:all:) pinned by requirements/lock.txt, and PyPI has those wheels for
# linux/amd64 and linux/arm64, so `docker buildx build --platform linux/amd64,linux/arm64 .`
# builds both. Build tools and pip's caches stay in the build stages; the runtime stages
# copy one virtualenv.
#
# The base is a build argument, so the suite can build this file where no registry is
# reachable (tests/container builds a Python base from Debian's packages and passes it):
#
#   docker build --build-arg PYTHON_IMAGE=my/python:3.11 .
#
# BUILD_PYTHON_IMAGE, the build stages' base, defaults to the same image; the tests give
# the build stages a base that also holds the machine's CA bundle for pip, so that it never
# reaches the runtime stages.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG BUILD_PYTHON_IMAGE=${PYTHON_IMAGE}

# ---- build: the virtualenv with the production dependencies and drs-poller itself ------
FROM ${BUILD_PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# No pip inside the virtualenv: the base image's pip installs into it (--python), so the
# runtime image carries no installer.
RUN python -m venv --without-pip /opt/drs-poller
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml pyproject.toml
# The dependencies first, from pyproject.toml alone, so that a source change reuses this layer.
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(project['dependencies']))" > /tmp/requirements.txt \
 && python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(project['optional-dependencies']['local']))" > /tmp/requirements-local.txt \
 && pip --python /opt/drs-poller/bin/python install --only-binary=:all: \
        -c requirements/lock.txt -r /tmp/requirements.txt
COPY README.md README.md
COPY drs_poller drs_poller
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && pip --python /opt/drs-poller/bin/python install --no-deps /tmp/wheels/drs_poller-*.whl

# ---- build-local: the same virtualenv plus the [local] extra (moto server) --------------
FROM build AS build-local
RUN pip --python /opt/drs-poller/bin/python install --only-binary=:all: \
        -c requirements/lock.txt -r /tmp/requirements-local.txt

# ---- runtime: what both images share (no compilers, no pip, a non-root user) ------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid/gid, so orchestrators can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 drs-poller \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin drs-poller \
 && PIP_ROOT_USER_ACTION=ignore python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /root/.cache
ENV PATH=/opt/drs-poller/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRS_POLLER_METRICS_HOST=0.0.0.0 \
    DRS_POLLER_METRICS_PORT=9100
USER 10001:10001
EXPOSE 9100
# SIGTERM is what ECS and `docker stop` send; the exec-form ENTRYPOINT makes drs-poller
# PID 1 (no shell in between), so the signal reaches its handler, which stops new polls,
# lets polls in flight finish within DRS_POLLER_SHUTDOWN_GRACE, and exits 0.
STOPSIGNAL SIGTERM
# /healthz answers 200 while the dispatcher loop turns. A slim image has no curl, so
# python's urllib asks (exec form: no shell); an HTTP 503 raises, and the check fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DRS_POLLER_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["drs-poller"]
CMD ["run"]

# ---- local: the runtime plus moto (the compose `ec2` service, `drs-poller demo`) ---------
FROM runtime AS local
COPY --from=build-local /opt/drs-poller /opt/drs-poller

# ---- production (last, so a plain `docker build .` builds it): no moto -------------------
FROM runtime AS production
COPY --from=build /opt/drs-poller /opt/drs-poller
