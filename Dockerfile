# twinedge serve in a container: `docker build -t twinedge .` (deploy/compose.yaml runs it
# with PostgreSQL and Mosquitto). Settings come from TWINEDGE_* variables (docs/api.md).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# the OpenTelemetry exporter is in the image; tracing stays off unless TWINEDGE_OTEL=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/twinedge-*.whl)[otel]" && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /var/lib/twinedge --create-home twinedge
USER twinedge
WORKDIR /var/lib/twinedge
ENV TWINEDGE_HOST=0.0.0.0 \
    TWINEDGE_PORT=8080 \
    TWINEDGE_DATA_DIR=/var/lib/twinedge \
    TWINEDGE_MQTT_HOST=0.0.0.0 \
    TWINEDGE_MQTT_PORT=1883 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/twinedge"]
EXPOSE 8080 1883
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["twinedge"]
CMD ["serve"]
