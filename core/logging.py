"""Structured logging set-up: structlog with bound request/order ids, no secrets.

Two situations, two defaults:

* **Embedded** (``Engine`` inside someone's script or service): ordnung is a library
  and stays quiet. Until the host application configures structlog itself, ordnung's
  structlog loggers forward to the standard library's ``logging`` under the ``ordnung``
  logger, which has a ``NullHandler``: nothing is printed unless the application
  configures ``logging`` (``logging.basicConfig(level=logging.INFO)`` shows ordnung's
  lines) or calls ``configure_logging``.
* **Served** (``ordnung serve``, the CLI): ``configure_logging`` renders every line the
  same way — ordnung's own and those of uvicorn, piccolo, asyncio and ``warnings`` — as
  console lines or, with ``json=True``, one JSON object per line.

Tracebacks are rendered without local variables (they can hold tokens, keys or
personal data), and known secret fields are masked whatever logs them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = frozenset({"token", "authorization", "api_key", "key", "password", "secret",
                         "card_number", "cvc", "webhook_secret"})

#: the standard-library loggers of the server stack, rendered like ordnung's own lines
#: (not uvicorn.access: the app logs one line per request, and uvicorn's is off)
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "piccolo", "asyncio",
                   "py.warnings", "litestar")


#: libraries that only speak up for warnings: HTTP clients log every URL they call at INFO
#: (a URL can carry a key: webhook and gateway callbacks do), piccolo the database
#: driver's version at every start
WARNINGS_ONLY = ("httpx", "httpcore", "piccolo")


def mask_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event_dict):
        if name.lower() in SECRET_KEYS and event_dict[name]:
            event_dict[name] = "***"
    return event_dict


def quiet_by_default() -> None:
    """Route ordnung's lines into ``logging`` (silent until the application configures
    it), unless structlog was configured already — by the application or by
    ``configure_logging``. Called when ``ordnung.core`` is imported."""
    logging.getLogger("ordnung").addHandler(logging.NullHandler())
    if structlog.is_configured():
        return
    # processors that work with any logger, so that an application which later replaces
    # only structlog's logger factory still gets working lines; the standard library
    # filters the levels
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            mask_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def configure_logging(level: str = "INFO", *, json: bool = False,
                      stream: TextIO | None = None, final: bool = False) -> None:
    """Configure structlog and the standard library's logging for an ordnung process
    (the CLI and the API server call this), so that every line has one format.

    ``final``: this process keeps this configuration for good (a server's worker), so
    each logger resolves its configuration once, on first use, instead of on every
    call: a line below the level then costs a method call and no more. A process
    that configures again later (tests capturing lines) leaves it False."""
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    renderer: Any
    if json:
        shared.append(structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)))
        renderer = structlog.processors.JSONRenderer()
    else:
        shared.append(structlog.dev.set_exc_info)
        renderer = structlog.dev.ConsoleRenderer(
            colors=False,
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
            if _has_rich() else structlog.dev.plain_traceback)
    out = stream or sys.stderr
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=final,
    )
    # the standard library's records (uvicorn, piccolo, asyncio, warnings) through the
    # same processors and renderer, to the same stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        for old in list(foreign.handlers):
            foreign.removeHandler(old)
        foreign.propagate = True
    for name in WARNINGS_ONLY:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
    logging.captureWarnings(True)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
