# CareForAll in one container: the service on SQLite in the /data volume, or
# on PostgreSQL when CAREFORALL_DATABASE_URL says so.
# Build: docker build -t careforall:0.2.0 . (the version in pyproject.toml)
FROM python:3.11-slim

# Kept equal to pyproject.toml's version (tests/deploy checks it).
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="CareForAll" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CAREFORALL_DATABASE_URL=sqlite:////data/careforall.db

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY careforall ./careforall
COPY migrations ./migrations
COPY web ./web
# The same install the README uses; migrations and web files ship in the package.
RUN python -m pip install . && rm -rf /src

RUN useradd --system --uid 10001 --home /data careforall \
    && mkdir -p /data && chown careforall /data
USER careforall
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"

CMD ["careforall", "serve", "--host", "0.0.0.0", "--port", "8000"]
