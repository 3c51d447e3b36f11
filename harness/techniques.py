"""The Technique API and its registry.

A technique is a Lightning `Callback` plus metadata saying what part of training
it touches, which techniques it cannot stack with and where it sits in the
composition order. The functional form (plain torch) lives beside the hook class
in each reproduction module, as Composer's algorithms do.

Techniques register with `@register_technique`; a duplicate name is refused. The
built-in papers and third-party packages alike reach the registry through the
entry-point group `effitrain.plugins` (harness/registry.py): harness never
imports the modules that define techniques.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl

from harness.cards import PaperCard
from harness.registry import Registry

TOUCHES = frozenset(
    {"data", "loss", "params", "optimizer", "schedule", "precision", "gradients", "architecture", "eval"}
)


class Technique(pl.Callback):
    """A training-cost technique: a Lightning callback with metadata.

    Subclasses set the class attributes and override Lightning hooks. Model
    surgery goes in `setup()` (the optimizer does not exist yet). A technique
    that owns the number format returns a Lightning `Precision` plugin from
    `precision_plugin()`; the Trainer takes one, so two such owners conflict.
    A technique that changes the loss overrides `loss()`, called by the
    harness's LightningModule with the batch's logits. A technique that keeps
    state across steps outside the model and optimizer (its own random
    generator, counters) returns it from `state_dict()` and restores it in
    `load_state_dict()` (Lightning's callback checkpoint hooks, called after
    `setup()`), so a resumed run continues exactly; tests/test_resume.py
    checks every paper's smoke recipe.
    """

    name: ClassVar[str] = ""
    card: ClassVar[PaperCard | None] = None
    touches: ClassVar[frozenset[str]] = frozenset()
    conflicts: ClassVar[frozenset[str]] = frozenset()
    # Why, in words a reader can check, for each name in `conflicts` (shown by `conflict_reason`).
    conflict_notes: ClassVar[dict[str, str]] = {}
    order: ClassVar[int] = 50  # lower runs first; ties broken by name
    description: ClassVar[str] = ""
    # Arms of the same seed this technique needs trained first (e.g. a teacher).
    needs_arms: ClassVar[tuple[str, ...]] = ()

    def precision_plugin(self) -> Any | None:
        return None

    def loss(self, pl_module: Any, logits: Any, x: Any, y: Any, base_loss: Any) -> Any:
        """Return the training loss; the default keeps the recipe's loss."""
        return base_loss

    def configure_optimizer(self, model: Any, spec: dict[str, Any]) -> Any | None:
        """Return an optimizer to use instead of the recipe's (`spec` is its `optim` dict), or None.

        A technique that overrides this must touch "optimizer"; two such owners conflict.
        """
        return None

    def params(self) -> dict[str, Any]:
        """The knobs this instance runs with, logged as MLflow params."""
        return {}

    def flop_fraction(self) -> float:
        """Share of the dense step's FLOPs this technique declares it spends."""
        return 1.0


TECHNIQUES: Registry[type[Technique]] = Registry("technique")


def register_technique(cls: type[Technique]) -> type[Technique]:
    """Class decorator: add a technique to the registry, refusing duplicates."""
    if not cls.name:
        raise ValueError(f"technique class {cls.__name__} has no name")
    unknown = set(cls.touches) - TOUCHES
    if unknown:
        raise ValueError(f"technique '{cls.name}' touches unknown parts {sorted(unknown)}; "
                         f"expected some of {sorted(TOUCHES)}")
    return TECHNIQUES.add(cls.name, cls)


def techniques() -> dict[str, type[Technique]]:
    """All registered techniques, built-in and from plug-ins, by name."""
    return TECHNIQUES.all()


def get_technique(name: str) -> type[Technique]:
    return TECHNIQUES.get(name)


def conflict_reason(a: type[Technique], b: type[Technique]) -> str | None:
    """Why two techniques cannot be composed, in words, or None if they can."""
    if a.name == b.name:
        return f"'{a.name}' is given twice"
    if b.name in a.conflicts or a.name in b.conflicts:
        note = a.conflict_notes.get(b.name) or b.conflict_notes.get(a.name)
        return f"'{a.name}' and '{b.name}' cannot be combined: {note}" if note else \
            f"'{a.name}' and '{b.name}' declare a conflict"
    if "precision" in a.touches and "precision" in b.touches:
        return f"'{a.name}' and '{b.name}' both own the number format (one Lightning precision plugin per Trainer)"
    if "optimizer" in a.touches and "optimizer" in b.touches:
        return f"'{a.name}' and '{b.name}' both replace the optimizer"
    return None


def compose(names: list[str]) -> list[type[Technique]]:
    """Resolve names to classes in the deterministic composition order.

    Order: ascending `order`, then name. Raises ValueError for an unknown name
    or a conflicting pair, before anything runs.
    """
    classes = [get_technique(n) for n in names]
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            reason = conflict_reason(a, b)
            if reason:
                raise ValueError(f"techniques cannot be combined: {reason}")
    return sorted(classes, key=lambda c: (c.order, c.name))
