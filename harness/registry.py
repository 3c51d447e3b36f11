"""One registry type for papers, techniques, recipes and datasets, filled through entry points.

`harness` never imports `reproductions`: the built-in papers are a plug-in like any other. The
distribution declares them in `pyproject.toml` under the entry-point group `effitrain.plugins`
(`builtin = "reproductions"`), and harness's own shared recipes the same way (`zoo = "harness.zoo"`);
a third-party package adds its own entry point to the same group.
An entry point names a module, whose import registers what it defines, or a callable, which is
called once with no arguments. The older group `effitrain.techniques` is read too.

Plug-ins load on the first look-up of any registry (`all`, `get`, `in`), not at import, so
importing `harness` stays cheap and free of cycles. timm's `_registry.py` works the same way:
the registry never imports the models; the models' modules register themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

__all__ = ["ENTRY_POINT_GROUPS", "Registry", "load_plugins"]

T = TypeVar("T")

ENTRY_POINT_GROUPS = ("effitrain.plugins", "effitrain.techniques")

_loaded = False


def load_plugins() -> None:
    """Import every entry point of the effitrain groups, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a plug-in that looks a name up while it registers sees what exists so far
    found = [ep for group in ENTRY_POINT_GROUPS for ep in entry_points(group=group)]
    for ep in sorted(found, key=lambda e: (e.name not in ("zoo", "builtin"), e.name)):  # ours first
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except Exception as exc:  # every later look-up fails the same way, never with a partial registry
            _loaded = False
            raise ValueError(f"plug-in '{ep.name}' ({ep.value}) failed to load: "
                             f"{type(exc).__name__}: {exc}") from exc


class Registry(Generic[T]):
    """Named objects of one kind; a second, different object under a known name is refused."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        known = self._items.get(name)
        if known is not None and known is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered by {_origin(known)}")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda obj: self.add(name, obj)

    def all(self) -> dict[str, T]:
        """Everything registered, built-in and plug-in, sorted by name."""
        load_plugins()
        return dict(sorted(self._items.items()))

    def get(self, name: str) -> T:
        known = self.all()
        if name not in known:
            choices = ", ".join(known) or "(none registered)"
            raise ValueError(f"unknown {self.kind} '{name}'; expected one of: {choices}")
        return known[name]

    def __contains__(self, name: object) -> bool:
        return name in self.all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self.all())


def _origin(obj: object) -> str:
    return getattr(obj, "__module__", None) or getattr(obj, "__name__", None) or type(obj).__name__
