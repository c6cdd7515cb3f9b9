"""Plugin loading and the embedder and scorer registries.

Plugins are loaded explicitly by :func:`load_plugins` (every registry lookup
calls it), never at import time. The environment variable
``RORF_LOAD_PLUGINS`` limits which entry points load: a comma-separated list
of entry-point names, or an empty string for none. Built-in embedders and
scorers always load, through the same hooks as third-party plugins.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from rorf_core import hookspecs
from rorf_core.errors import PluginLoadError, UnknownNameError

logger = logging.getLogger(__name__)

__all__ = [
    "RegistryEntry",
    "PluginFailure",
    "load_plugins",
    "register_plugin",
    "unregister_plugin",
    "get_embedder",
    "get_scorer_class",
    "embedder_entries",
    "scorer_entries",
    "plugin_failures",
]

ENTRY_POINT_GROUP = "rorf"
LOAD_PLUGINS_ENV = "RORF_LOAD_PLUGINS"
BUILTIN_PLUGINS = ("rorf_core.builtins",)


@attrs.frozen(kw_only=True)
class RegistryEntry:
    """One registered embedder factory or scorer class and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    plugin: str
    distribution: str | None = None
    version: str | None = None


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that failed to import or to register, with its error."""

    plugin: str
    distribution: str | None
    error: str


@attrs.define
class _Origin:
    distribution: str | None = None
    version: str | None = None


class _PluginHost:
    """The pluggy manager plus registries rebuilt whenever plugins change."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.origins: dict[str, _Origin] = {}
        self.failures: list[PluginFailure] = []
        self.loaded = False
        self.lock = threading.RLock()
        self._registries: dict[str, dict[str, RegistryEntry]] | None = None

    def load(self) -> None:
        with self.lock:
            if self.loaded:
                return
            self.loaded = True
            for module_name in BUILTIN_PLUGINS:
                module = importlib.import_module(module_name)
                self.add(module, module_name, _Origin("rorf-core", _core_version()))
            for entry_point in _selected_entry_points():
                self._load_entry_point(entry_point)

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        distribution = entry_point.dist.name if entry_point.dist else None
        version = entry_point.dist.version if entry_point.dist else None
        if self.manager.has_plugin(entry_point.name):
            return
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken plugin must not stop the others
            self._fail(entry_point.name, distribution, error)
            return
        self.add(plugin, entry_point.name, _Origin(distribution, version))

    def _fail(self, plugin: str, distribution: str | None, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        logger.warning("plugin %r (%s) failed to load: %s", plugin, distribution, message)
        self.failures.append(PluginFailure(plugin=plugin, distribution=distribution, error=message))

    def add(self, plugin: object, name: str, origin: _Origin) -> None:
        with self.lock:
            self.manager.register(plugin, name=name)
            self.origins[name] = origin
            self._registries = None

    def remove(self, name: str) -> None:
        with self.lock:
            self.manager.unregister(name=name)
            self.origins.pop(name, None)
            self.failures = [f for f in self.failures if f.plugin != name]
            self._registries = None

    def registries(self) -> dict[str, dict[str, RegistryEntry]]:
        self.load()
        with self.lock:
            if self._registries is None:
                self._registries = self._build()
            return self._registries

    def _build(self) -> dict[str, dict[str, RegistryEntry]]:
        self.failures = [f for f in self.failures if not f.error.startswith("register")]
        registries: dict[str, dict[str, RegistryEntry]] = {"embedder": {}, "scorer": {}}
        hooks = {"embedder": "register_embedders", "scorer": "register_scorers"}
        for kind, hook_name in hooks.items():
            hook = getattr(self.manager.hook, hook_name)
            # pluggy calls the newest plugin first; call the oldest first so
            # that a later plugin may override a built-in name.
            for impl in reversed(hook.get_hookimpls()):
                self._call_impl(kind, impl, registries[kind])
        return registries

    def _call_impl(self, kind: str, impl: Any, registry: dict[str, RegistryEntry]) -> None:
        origin = self.origins.get(impl.plugin_name, _Origin())
        collected: list[RegistryEntry] = []

        def register(name: str, factory: Callable[..., Any], aliases: tuple[str, ...] = ()) -> None:
            collected.append(
                RegistryEntry(
                    kind=kind,
                    name=name,
                    factory=factory,
                    aliases=tuple(aliases),
                    plugin=impl.plugin_name,
                    distribution=origin.distribution,
                    version=origin.version,
                )
            )

        try:
            impl.function(register=register)
        except Exception as error:  # a broken plugin must not stop the others
            self._fail(impl.plugin_name, origin.distribution, _RegisterError(error))
            return
        for entry in collected:
            for key in (entry.name, *entry.aliases):
                if key in registry and registry[key].plugin != entry.plugin:
                    logger.info(
                        "%s %r from plugin %r replaces the one from %r",
                        kind, key, entry.plugin, registry[key].plugin,
                    )
                registry[key] = entry


class _RegisterError(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")

    def __str__(self) -> str:
        return f"registering failed: {self.args[0]}"


def _core_version() -> str | None:
    try:
        return importlib.metadata.version("rorf-core")
    except importlib.metadata.PackageNotFoundError:
        return None


def _selected_entry_points() -> list[importlib.metadata.EntryPoint]:
    found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    selection = os.environ.get(LOAD_PLUGINS_ENV)
    if selection is None:
        return found
    wanted = {name.strip() for name in selection.split(",") if name.strip()}
    return [entry_point for entry_point in found if entry_point.name in wanted]


_host = _PluginHost()


def load_plugins() -> None:
    """Load built-in and entry-point plugins once; later calls do nothing."""
    _host.load()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object at run time and return the name it got.

    ``plugin`` is any object or module with ``@hookimpl`` functions. Use this
    to add a custom embedder or scorer without packaging it.
    """
    load_plugins()
    plugin_name = name or getattr(plugin, "__name__", None) or f"runtime-{id(plugin)}"
    if _host.manager.has_plugin(plugin_name):
        raise PluginLoadError(f"a plugin named {plugin_name!r} is already registered")
    _host.add(plugin, plugin_name, _Origin())
    return plugin_name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered under ``name``."""
    _host.remove(name)


def embedder_entries() -> dict[str, RegistryEntry]:
    """Return every registered embedder, keyed by name and alias."""
    return dict(_host.registries()["embedder"])


def scorer_entries() -> dict[str, RegistryEntry]:
    """Return every registered scorer, keyed by name and alias."""
    return dict(_host.registries()["scorer"])


def plugin_failures() -> list[PluginFailure]:
    """Return the plugins that failed to import or register."""
    _host.registries()
    return list(_host.failures)


def _lookup(kind: str, name: str) -> RegistryEntry:
    registry = _host.registries()[kind]
    if name not in registry:
        raise UnknownNameError(kind, name, registry)
    return registry[name]


def get_embedder(name: str, **options: Any) -> Any:
    """Build the embedder registered as ``name`` with ``options``."""
    return _lookup("embedder", name).factory(**options)


def get_scorer_class(name: str) -> Any:
    """Return the scorer class registered as ``name``."""
    return _lookup("scorer", name).factory
