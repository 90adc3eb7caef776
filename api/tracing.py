"""OpenTelemetry tracing, an optional extra: ``pip install 'ordnung[otel]'``.

With ``ORDNUNG_TRACING=true`` every request gets a server span (litestar's
OpenTelemetry plugin) and every plugin hook call a child span named after the hook
and the plugin, with the order being worked on (``ordnung.order_id``); a request for
one order carries its id as well. Spans leave through OTLP over HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT`` (OpenTelemetry's own variables apply:
``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS`` ...), unless the process already
has a tracer provider (``opentelemetry-instrument``), which is then used.

Kept out of traces: query strings (a stream token or a gateway's access key can be
one) and the webhook, health, metrics and documentation paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from litestar import Request

from ordnung.core.config import env_bool
from ordnung.core.errors import ConfigError

ENV_TRACING = "ORDNUNG_TRACING"
#: paths without spans: callbacks that carry keys, and the operator's own probes
UNTRACED = ["^/webhooks/", "^/health", "^/metrics", "^/schema"]
#: span attributes that would hold the query string, per the old and new conventions
QUERY_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query")


def tracing_wanted() -> bool:
    raw = os.environ.get(ENV_TRACING)
    return bool(raw) and env_bool(ENV_TRACING, raw or "")


class OtelTracer:
    """The core's ``Tracer`` on an OpenTelemetry tracer."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def span(self, name: str, attributes: Mapping[str, str]) -> AbstractContextManager[object]:
        cm: AbstractContextManager[object] = self.tracer.start_as_current_span(
            name, attributes=dict(attributes))
        return cm


class Tracing:
    """What the app needs when tracing is on: the litestar plugin, the engine's tracer,
    a hook that names the order of a request, and a way to flush at shutdown."""

    def __init__(self, provider: Any | None = None) -> None:
        try:
            from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
            from opentelemetry import trace
        except ImportError:
            raise ConfigError(ENV_TRACING, "tracing needs the otel extra: "
                                           "pip install 'ordnung[otel]'") from None
        self.owned = provider is None and _no_global_provider(trace)
        if provider is None:
            provider = _otlp_provider() if self.owned else trace.get_tracer_provider()
        self.provider = provider
        self.plugin = OpenTelemetryPlugin(OpenTelemetryConfig(
            tracer_provider=provider, exclude=UNTRACED, exclude_spans=["receive", "send"],
            server_request_hook_handler=_without_query))
        self.tracer = OtelTracer(provider.get_tracer("ordnung"))

    def shutdown(self) -> None:
        """Send what is buffered (the provider is ours only when we made it)."""
        if hasattr(self.provider, "force_flush"):
            self.provider.force_flush()
        if self.owned and hasattr(self.provider, "shutdown"):
            self.provider.shutdown()


async def name_the_order(request: Request[Any, Any, Any]) -> None:
    """``before_request``: a request about one order carries its id on its span."""
    from opentelemetry import trace

    order_id = request.path_params.get("order_id")
    if order_id:
        trace.get_current_span().set_attribute("ordnung.order_id", str(order_id))


def _without_query(span: Any, scope: Mapping[str, Any]) -> None:
    if not scope.get("query_string") or not span.is_recording():
        return
    path = str(scope.get("path", ""))
    for key in QUERY_ATTRIBUTES:
        span.set_attribute(key, "" if key == "url.query" else path)


def _no_global_provider(trace: Any) -> bool:
    return type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


def _otlp_provider() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                               "ordnung")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
