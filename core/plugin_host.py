"""Discovering, configuring and calling plugins.

pluggy finds and orders implementations; it does not await coroutines. So
the core calls implementations itself (``collect``, ``first``, ``directed``)
and awaits whatever is awaitable. The order of implementations per hook is
computed once and cached: plugin look-ups are off the hot path.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import msgspec
import pluggy
import structlog

from ordnung.core import hookspecs
from ordnung.core.errors import PluginError
from ordnung.core.logging import SECRET_KEYS
from ordnung.core.observe import Tracer

log = structlog.get_logger("ordnung.plugins")

ENTRY_POINT_GROUP = "ordnung"
#: where the entry points of the plugins shipped with ordnung point
BUILTIN_PREFIX = "ordnung.plugins."


def validate_settings(plugin_name: str, settings_type: Any, raw: Mapping[str, Any]) -> Any:
    """Validate ``raw`` into the plugin's Settings Struct, naming plugin and field on error."""
    try:
        return msgspec.convert(dict(raw), settings_type, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = ""
        if "at `$." in message:
            field = message.rsplit("at `$.", 1)[1].rstrip("`")
        raise PluginError(plugin_name, f"invalid settings: {message}", field=field) from exc


def is_secret(field: str) -> bool:
    """A settings field that holds a secret (a password, an API key, a signing secret)."""
    name = field.lower()
    return name in SECRET_KEYS or name.endswith(("password", "secret", "token", "_key"))


def mask_secrets(value: Any) -> Any:
    """``value`` with every secret field's value replaced by ``***`` (for listings)."""
    if isinstance(value, dict):
        return {k: "***" if is_secret(str(k)) and v else mask_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


class PluginHost:
    """The plugin manager: registration, settings, and async-aware hook calls."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.settings: dict[str, Any] = {}
        self._impls: dict[str, list[pluggy.HookImpl]] = {}
        #: spans around hook calls, when the host traces (None: no cost at all)
        self.tracer: Tracer | None = None

    # -- registration -------------------------------------------------------------
    def register(self, plugin: Any, name: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> Any:
        """Register a plugin object, or a class to instantiate with its settings.

        A plugin class may declare ``Settings`` (a msgspec Struct); it is then
        constructed as ``cls(settings)`` with validated settings.
        """
        plugin_name = name or getattr(plugin, "name", None) or getattr(plugin, "__name__", None)
        if not plugin_name:
            raise PluginError(repr(plugin), "a plugin needs a name")
        if self.pm.has_plugin(plugin_name):
            raise PluginError(plugin_name, "is already registered")
        instance: Any = plugin
        if inspect.isclass(plugin):
            settings_type = getattr(plugin, "Settings", None)
            if settings_type is not None:
                valid = validate_settings(plugin_name, settings_type, settings or {})
                self.settings[plugin_name] = valid
                instance = plugin(valid)  # type: ignore[call-arg]
            else:
                if settings:
                    raise PluginError(plugin_name, "takes no settings")
                instance = plugin()
        elif settings:
            raise PluginError(plugin_name, "settings need a plugin class with a Settings Struct")
        if not getattr(instance, "name", None):
            with contextlib.suppress(AttributeError):
                instance.name = plugin_name
        self.pm.register(instance, name=plugin_name)
        self._impls.clear()
        log.debug("plugin registered", plugin=plugin_name)
        return instance

    def load_entry_points(self, enabled: Iterable[str] | None,
                          settings: Mapping[str, Mapping[str, Any]] | None = None,
                          defaults: Iterable[str] = ()) -> list[str]:
        """Load plugins of the ``ordnung`` entry-point group that are enabled.

        ``enabled=None`` enables the default set: the built-in plugins named in
        ``defaults`` and every third-party plugin that is installed (installing a
        plugin is asking for it). Naming a plugin that is not installed is an error,
        as is settings for a plugin not enabled.
        """
        settings = settings or {}
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if enabled is None:
            wanted = [name for name, ep in found.items()
                      if name in defaults or not ep.value.startswith(BUILTIN_PREFIX)]
        else:
            wanted = list(enabled)
        missing = [n for n in wanted if n not in found]
        if missing:
            raise PluginError(", ".join(missing), "is enabled but not installed "
                              f"(installed: {', '.join(sorted(found)) or 'none'})")
        stray = [n for n in settings if n not in wanted]
        if stray:
            raise PluginError(", ".join(stray), "has settings but is not enabled")
        for name in wanted:
            try:
                obj = found[name].load()
            except Exception as exc:
                raise PluginError(name, f"cannot be imported: {exc}") from exc
            self.register(obj, name=name, settings=settings.get(name))
        return wanted

    def check(self) -> None:
        """Refuse misspelled hooks and hook wrappers before anything runs."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(getattr(exc, "plugin_name", "?") or "?",
                              f"implements an unknown hook: {exc}") from exc
        for hook_name in self._hook_names():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.hookwrapper or impl.wrapper:
                    raise PluginError(impl.plugin_name,
                                      f"hook wrappers are not supported for {hook_name}")

    def _hook_names(self) -> list[str]:
        return [n for n in dir(self.pm.hook) if n.startswith("ordnung_")]

    def names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            settings = self.settings.get(name)
            out.append({
                "name": name,
                "hooks": hooks,
                "settings": mask_secrets(msgspec.to_builtins(settings))
                if settings is not None else {},
                "doc": (inspect.getdoc(plugin) or "").split("\n\n")[0],
            })
        return out

    # -- calling ------------------------------------------------------------------
    def impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        cached = self._impls.get(hook_name)
        if cached is None:
            # get_hookimpls() is stored in reverse call order
            cached = list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))
            self._impls[hook_name] = cached
        return cached

    def has_impl(self, hook_name: str) -> bool:
        return bool(self.impls(hook_name))

    async def _call(self, impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> Any:
        if self.tracer is not None:
            return await self._traced_call(self.tracer, impl, kwargs)
        result = impl.function(*[kwargs[a] for a in impl.argnames])
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _traced_call(self, tracer: Tracer, impl: pluggy.HookImpl,
                           kwargs: Mapping[str, Any]) -> Any:
        """The call in a span named after the hook, with the plugin and the order being
        worked on (the ``order_id`` bound to the log context, where there is one)."""
        hook = impl.opts.get("specname") or impl.function.__name__
        attributes = {"ordnung.hook": hook, "ordnung.plugin": impl.plugin_name}
        order_id = structlog.contextvars.get_contextvars().get("order_id")
        if order_id:
            attributes["ordnung.order_id"] = str(order_id)
        with tracer.span(f"{hook} {impl.plugin_name}", attributes):
            result = impl.function(*[kwargs[a] for a in impl.argnames])
            if inspect.isawaitable(result):
                result = await result
            return result

    async def collect(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation; return ``(plugin_name, answer)`` for non-None answers."""
        out: list[tuple[str, Any]] = []
        for impl in self.impls(hook_name):
            result = await self._call(impl, kwargs)
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    async def collect_each(self, hook_name: str,
                           kwargs_for: Any) -> list[tuple[str, Any]]:
        """Like ``collect``, with arguments made per plugin (e.g. its own PluginStore)."""
        out: list[tuple[str, Any]] = []
        for impl in self.impls(hook_name):
            result = await self._call(impl, kwargs_for(impl.plugin_name))
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    async def first(self, hook_name: str, **kwargs: Any) -> tuple[str, Any] | None:
        """Call implementations until one answers; return ``(plugin_name, answer)``."""
        for impl in self.impls(hook_name):
            result = await self._call(impl, kwargs)
            if result is not None:
                return impl.plugin_name, result
        return None

    async def directed(self, plugin_name: str, hook_name: str, **kwargs: Any) -> Any:
        """Call only ``plugin_name``'s implementation; None if it has none."""
        for impl in self.impls(hook_name):
            if impl.plugin_name == plugin_name:
                return await self._call(impl, kwargs)
        return None

    def implements(self, plugin_name: str, hook_name: str) -> bool:
        return any(i.plugin_name == plugin_name for i in self.impls(hook_name))

    def after_commit_impls(self, hook_name: str) -> list[str]:
        return [i.plugin_name for i in self.impls(hook_name)]
