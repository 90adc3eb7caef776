# The REST API (`ordnung serve`) in a container, built from this repository:
#
#   docker build -t ordnung .
#   docker run -p 8000:8000 \
#     -e ORDNUNG_DATABASE_URL=postgresql://ordnung:secret@db:5432/ordnung \
#     -e ORDNUNG_ADMIN_KEY=a-long-random-admin-key ordnung
#
# Migrations are applied when the server starts (under a lock: several containers may
# start at once). Without ORDNUNG_DATABASE_URL the server keeps a SQLite database in
# the /var/lib/ordnung volume: fine for one container, not for several.

# -- build: wheels of ordnung (with the OpenTelemetry extra) and its dependencies
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY plugin plugin
COPY api api
COPY plugins plugins
COPY migrations migrations
COPY testing testing
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[otel]"

# -- run: the installed package only, as an unprivileged user
FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/ordnung ordnung
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "ordnung[otel]" \
    && rm -rf /wheels
USER ordnung
WORKDIR /var/lib/ordnung
VOLUME /var/lib/ordnung
ENV PYTHONUNBUFFERED=1 \
    ORDNUNG_DATABASE_URL=sqlite:////var/lib/ordnung/ordnung.db
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["ordnung", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--log-json"]
