# CareForAll in one container: the service on SQLite in the /data volume, or
# on PostgreSQL when CAREFORALL_DATABASE_URL says so.
# Build: docker build -t careforall:0.2.0 . (the version in pyproject.toml)
#
# BASE is any Debian-like image with Python 3.11+, its venv module, useradd
# and apt-get (Debian's own needs the python3-venv and passwd packages); the
# official slim image is the default.
# .ci/container-check builds on a Debian image made with mmdebstrap instead.
ARG BASE=python:3.11-slim

# ---- build: a virtual environment holding the package and what it runs on ----
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# WHEELS: a folder of wheels the build installs from instead of the package
# index (.ci/container-check makes one with `pip wheel` on the host and
# mounts it; then the build needs no index). Empty: the index, as usual.
ARG WHEELS=
# binutils for strip: wheels ship their compiled extensions with debug symbols
# (uvloop's alone is 13 MB with them, 2 MB without). PostgreSQL's client
# library (libpq5: psycopg loads it) and what it needs beyond the base: its
# packages are kept in /debs for the run stage, which installs them without
# apt's lists.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && mkdir -p /debs/partial \
    && apt-get install -y -qq --no-install-recommends \
        -o Dir::Cache::archives=/debs libpq5 >/dev/null \
    && rm -rf /debs/partial /debs/lock \
    && python3 -m venv /opt/careforall
WORKDIR /src
# The dependencies get a layer of their own, reused until pyproject.toml
# changes. The pip cache is a build mount: it never lands in a layer.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && /opt/careforall/bin/pip install --no-compile \
        ${WHEELS:+--no-index --find-links=$WHEELS} -r /tmp/requirements.txt
COPY README.md alembic.ini ./
COPY careforall ./careforall
COPY migrations ./migrations
COPY web ./web
# The same install as the README's "Run it"; migrations and the web app ship
# inside the package. Then out goes what the service never runs, each safe
# for the reason given (and .ci/container-check runs each feature's code
# path in the built image: PostgreSQL, Stripe, mail, images, tracing):
# - pip and setuptools; uvicorn's file watcher (--reload), .env and YAML
#   log-config readers (the service configures itself from CAREFORALL_*
#   variables); the test suites SQLAlchemy and Alembic ship;
# - psycopg's binary build (10 MB: its own libpq, OpenSSL, Kerberos and
#   LDAP): psycopg's pure-Python build loads the base's libpq5 instead,
#   installed in the run stage (1.4 MB on Debian's Python, which has most
#   of what it needs already);
# - tzdata: python-dateutil's fallback time zone database; the service
#   names no time zone (it keeps UTC), and Debian bases have their own;
# - stripe/params (8 MB, 840 files): TypedDicts of every API call's
#   parameters, imported only under TYPE_CHECKING (the grep below fails the
#   build if a release of the library starts importing them at run time);
#   stripe/events (1.5 MB): the classes of Stripe's v2 "thin" events, which
#   the library loads only for a v2 API answer; CareForAll calls the v1 API
#   and reads v1 webhooks;
# - SQLAlchemy's MySQL, SQL Server and Oracle dialects (and its mypy
#   plugin): the service takes only SQLite and PostgreSQL URLs, and Alembic
#   names the others only for type checkers;
# - Pillow's AVIF codec (5 MB) and its font renderer (FreeType, HarfBuzz,
#   libpng, Brotli: 3 MB), and its Tk bridge: uploads are read as JPEG, PNG
#   or WebP and written as JPEG (careforall/services/images.py), and
#   Pillow loads each of these lazily, so the formats in use never miss them;
# - type stubs (*.pyi, py.typed) and Cython sources, read by type checkers
#   and compilers, never by Python;
# - debug symbols.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/careforall/bin/pip install --no-compile --no-deps \
        ${WHEELS:+--no-index --find-links=$WHEELS} . \
    && /opt/careforall/bin/pip uninstall --yes --quiet \
        psycopg-binary tzdata watchfiles pyyaml python-dotenv setuptools pip \
    && site=$(echo /opt/careforall/lib/python3*/site-packages) \
    && rm -rf "$site/sqlalchemy/testing" "$site/alembic/testing" \
    && if grep -rlE '^(from|import) stripe\.params' "$site/stripe" --include='*.py' \
            | grep -v '/stripe/params/'; then \
        echo 'stripe imports stripe.params at run time: keep it' >&2; exit 1; fi \
    && rm -rf "$site/stripe/params" "$site/stripe/events" \
        "$site"/sqlalchemy/dialects/mysql "$site"/sqlalchemy/dialects/mssql \
        "$site"/sqlalchemy/dialects/oracle "$site"/sqlalchemy/ext/mypy \
    && rm -f "$site"/PIL/_avif.*.so "$site"/pillow.libs/libavif-* \
        "$site"/PIL/_imagingft.*.so "$site"/pillow.libs/libfreetype-* \
        "$site"/pillow.libs/libharfbuzz-* "$site"/pillow.libs/libpng16-* \
        "$site"/pillow.libs/libbrotli* "$site"/PIL/_imagingtk.*.so \
    && find "$site" -type f \( -name '*.pyi' -o -name py.typed -o -name '*.pyx' \
        -o -name '*.pxd' -o -name '*.pxi' \) -delete \
    && find /opt/careforall -type f \( -name '*.cpython-*.so' -o -name '*.abi3.so' \) \
        -exec strip --strip-unneeded {} +
# Bytecode only for what a start imports: the migrations on a throwaway
# database, the app, uvicorn's protocols, in one process whose modules are
# then compiled. A start then takes 6 s instead of 20 on a small machine;
# the other 10 MB of bytecode would rarely be read. The bytecode is
# "unchecked-hash": Python never compares it with the source's mtime, which
# a builder may not keep when it copies the files to the run stage (stale
# bytecode is recompiled at every start, as the service cannot write it).
# The images' formats are checked on the way.
RUN cd /tmp \
    && export CAREFORALL_DATABASE_URL=sqlite:////tmp/warm.db PYTHONDONTWRITEBYTECODE=1 \
    && /opt/careforall/bin/python -c 'import sys, glob, py_compile; import uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl, uvicorn.protocols.websockets.websockets_sansio_impl, uvicorn.lifespan.on; from careforall.cli import main; main(["migrate"]); from careforall.settings import Settings; from careforall.app import create_app; create_app(Settings.from_env()); files = {m.__file__ for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith("/opt/careforall/")} | set(glob.glob("/opt/careforall/lib/python3*/site-packages/careforall/migrations/**/*.py", recursive=True)); [py_compile.compile(f, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH) for f in files if f.endswith(".py")]; print(len(files), "modules compiled")' \
    && /opt/careforall/bin/python -c 'from PIL import features; assert all(features.check(f) for f in ("jpg", "zlib", "webp")), "Pillow lost a format"' \
    && rm -f /tmp/warm.db*

# ---- run: the base, a user, and the environment copied from the build ----
FROM ${BASE}

# Kept equal to pyproject.toml's version (tests/deploy checks it).
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="CareForAll" \
      org.opencontainers.image.description="Medical fundraising that never loses or doubles a donation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/careforall/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CAREFORALL_DATABASE_URL=sqlite:////data/careforall.db

# PostgreSQL's client library, from the packages the build stage downloaded
# (the folder is mounted, never copied: no .deb lands in a layer).
RUN --mount=type=bind,from=build,source=/debs,target=/debs \
    if ls /debs/*.deb >/dev/null 2>&1; then dpkg --install /debs/*.deb >/dev/null; fi \
    && useradd --user-group --uid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin careforall \
    && mkdir -p /data && chown careforall:careforall /data
COPY --from=build /opt/careforall /opt/careforall

USER careforall
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]

# uvicorn stops on SIGTERM: open requests finish (5 s at most), the outbox
# dispatcher and the database close, then the process exits.
STOPSIGNAL SIGTERM
CMD ["careforall", "serve", "--host", "0.0.0.0", "--port", "8000"]
