# One image, two roles: `email-service worker` (the default) and `email-service api`;
# `email-service migrate` upgrades the schema. Build from the repository root:
#   docker build -t email-service .
# The package is installed by scripts/install-package.sh, the same command scripts/bootstrap.sh
# runs for the tests (tests/unit/test_deployment.py checks that this file uses it).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: pip and the sources; only the virtual environment leaves it.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install-package.sh scripts/
COPY email_service email_service
COPY providers providers
COPY migrations migrations
RUN sh scripts/install-package.sh /opt/venv/bin/python /src

# Final stage: the slim base, the virtual environment, a non-root user.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 email-service \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/email-service \
        --create-home --shell /usr/sbin/nologin email-service
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/email-service/healthcheck.py
USER 10001:10001
WORKDIR /var/lib/email-service
# 8080: the worker's /health, /ready, /metrics (EMAIL_SERVICE_HTTP_PORT);
# 8081: the API (EMAIL_SERVICE_API_PORT).
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/email-service/healthcheck.py"]
CMD ["email-service", "worker"]
