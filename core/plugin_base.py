"""``WithContext``: what a plugin that keeps its context writes, written once."""

from __future__ import annotations

from typing import Generic, TypeVar

from ordnung.core.errors import PluginError
from ordnung.core.hookspecs import hookimpl
from ordnung.core.plugin_context import PluginContext

S = TypeVar("S")


class WithContext(Generic[S]):
    """A base for plugins that need their context after start (their store, the engine
    operations): keeps it from ``ordnung_plugin_started`` and hands it out as
    ``started``, which refuses to be used before the engine started the plugin."""

    context: PluginContext[S] | None = None

    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[S]) -> None:
        self.context = context

    @property
    def started(self) -> PluginContext[S]:
        if self.context is None:
            raise PluginError(type(self).__name__, "the engine has not started this plugin")
        return self.context
