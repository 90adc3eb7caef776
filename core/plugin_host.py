"""Discovering, configuring and calling plugins.

pluggy finds and orders implementations; it does not await coroutines. So
the core calls implementations itself, through the one ``PluginHost.call``,
which follows the convention the hook's spec declares (``core/hookspecs.py``),
awaits whatever is awaitable and checks each answer against the declared type.
Each hook's plan (implementations in order, contract, answer check) is computed
once and cached: plugin look-ups are off the hot path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import msgspec
import pluggy
import structlog

from ordnung.core import hookspecs
from ordnung.core.errors import PluginError
from ordnung.core.hook_contracts import (
    Check,
    HookContract,
    answer_check,
    contract_of,
    contracts,
)
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


class AnswerTypeError(PluginError):
    """A plugin answered a hook with something its spec does not declare.

    Its own class, so a caller that turns a plugin's failure into an outcome (a
    gateway error into a decline) still lets a broken contract through."""


@dataclass(frozen=True, slots=True)
class HookPlan:
    """How one hook is called: worked out once, used on every call."""

    contract: HookContract
    convention: str
    #: the implementations in call order
    impls: tuple[pluggy.HookImpl, ...]
    by_plugin: dict[str, pluggy.HookImpl]
    check: Check


class PluginHost:
    """The plugin manager: registration, settings, and async-aware hook calls."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.settings: dict[str, Any] = {}
        self._plans: dict[str, HookPlan] = {}
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
        self.pm.register(instance, name=plugin_name)
        self._plans.clear()
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
        contracts()  # a spec without a readable contract stops start-up here
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

    def settings_of(self, plugin_name: str) -> Any:
        """The plugin's validated settings: those it was constructed with by the host, or
        the ``settings`` of a plugin object registered ready-made; None without."""
        if plugin_name in self.settings:
            return self.settings[plugin_name]
        return getattr(self.pm.get_plugin(plugin_name), "settings", None)

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
    def plan(self, hook_name: str) -> HookPlan:
        """The hook's implementations in call order, its contract and its answer check:
        computed once per hook (and again only after a plugin is registered)."""
        cached = self._plans.get(hook_name)
        if cached is None:
            contract = contract_of(hook_name)
            # get_hookimpls() is stored in reverse call order
            impls = tuple(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))
            cached = HookPlan(contract=contract, convention=contract.convention, impls=impls,
                              by_plugin={i.plugin_name: i for i in impls},
                              check=answer_check(contract.answer))
            self._plans[hook_name] = cached
        return cached

    def impls(self, hook_name: str) -> tuple[pluggy.HookImpl, ...]:
        return self.plan(hook_name).impls

    def has_impl(self, hook_name: str) -> bool:
        return bool(self.plan(hook_name).impls)

    def implements(self, plugin_name: str, hook_name: str) -> bool:
        return plugin_name in self.plan(hook_name).by_plugin

    def implementers(self, hook_name: str) -> list[str]:
        """The plugins implementing ``hook_name``, in call order."""
        return [i.plugin_name for i in self.plan(hook_name).impls]

    async def call(self, hook_name: str, /, to: str | None = None,
                   each: Callable[[str], Mapping[str, Any]] | None = None,
                   **kwargs: Any) -> Any:
        """Call a hook as its spec declares, awaiting awaitable answers and checking every
        answer against the declared type (``PluginError`` naming plugin and hook if not).

        - ``to``: only that plugin's implementation is called; its answer (or None) is
          returned. A directed hook must name its plugin.
        - otherwise a *collect* hook returns ``[(plugin, answer), ...]`` for the answers
          that are not None, and a *firstresult* hook ``(plugin, answer)`` of the first
          plugin answering, or None.
        - ``each``: arguments made per plugin (its own ``PluginStore``), added to ``kwargs``.
        """
        plan = self.plan(hook_name)
        if to is not None:
            impl = plan.by_plugin.get(to)
            if impl is None:
                return None
            result = await self._invoke(impl, kwargs, each)
            return None if result is None else self._checked(plan, impl, result)
        if plan.convention == "directed":
            raise TypeError(f"{hook_name} is directed: name the plugin with to=")
        if plan.convention == "firstresult":
            for impl in plan.impls:
                result = await self._invoke(impl, kwargs, each)
                if result is not None:
                    return impl.plugin_name, self._checked(plan, impl, result)
            return None
        out: list[tuple[str, Any]] = []
        check = plan.check
        for impl in plan.impls:
            result = await self._invoke(impl, kwargs, each)
            if result is not None:
                try:  # inline: this loop is on every pricing's path
                    out.append((impl.plugin_name, check(result)))
                except (msgspec.ValidationError, TypeError) as exc:
                    raise self._wrong_answer(plan, impl, exc) from exc
        return out

    async def _invoke(self, impl: pluggy.HookImpl, kwargs: Mapping[str, Any],
                      each: Callable[[str], Mapping[str, Any]] | None) -> Any:
        if each is not None:
            kwargs = {**kwargs, **each(impl.plugin_name)}
        if self.tracer is not None:
            return await self._traced_call(self.tracer, impl, kwargs)
        result = impl.function(*[kwargs[a] for a in impl.argnames])
        # most answers are None: they skip isawaitable's slow check against the ABC
        if result is not None and inspect.isawaitable(result):
            result = await result
        return result

    @classmethod
    def _checked(cls, plan: HookPlan, impl: pluggy.HookImpl, result: Any) -> Any:
        try:
            return plan.check(result)
        except (msgspec.ValidationError, TypeError) as exc:
            raise cls._wrong_answer(plan, impl, exc) from exc

    @staticmethod
    def _wrong_answer(plan: HookPlan, impl: pluggy.HookImpl, exc: Exception) -> AnswerTypeError:
        return AnswerTypeError(impl.plugin_name,
                               f"{plan.contract.name} must answer {plan.contract.answer_name} "
                               f"or None: {exc}", hook=plan.contract.name)

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
            if result is not None and inspect.isawaitable(result):
                result = await result
            return result
