"""The paper registry: each reproduction module registers itself with `register_paper(module)`.

A paper module defines `CARD` (a `PaperCard`) and `recipe(scale) -> Recipe`; its id is
`CARD.id`, which is also the module's name and the key in `params.yaml`'s paper list.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from harness.registry import Registry

__all__ = ["PAPERS", "get_paper", "paper_source", "papers", "register_paper"]

PAPERS: Registry[ModuleType] = Registry("paper")


def register_paper(module: ModuleType) -> ModuleType:
    """Register a reproduction module; it must define CARD and recipe()."""
    card = getattr(module, "CARD", None)
    if card is None or not callable(getattr(module, "recipe", None)):
        raise ValueError(f"module {module.__name__} is not a paper: it needs CARD and recipe(scale)")
    if module.__name__.rsplit(".", 1)[-1] != card.id:
        raise ValueError(f"module {module.__name__}: CARD.id '{card.id}' must equal the module's name")
    return PAPERS.add(card.id, module)


def papers() -> dict[str, ModuleType]:
    return PAPERS.all()


def get_paper(paper_id: str) -> ModuleType:
    return PAPERS.get(paper_id)


def paper_source(paper_id: str) -> Path:
    """The file of a registered paper's module (logged with each run as its source)."""
    return Path(get_paper(paper_id).__file__)
