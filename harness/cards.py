"""Paper cards: what a paper is, what it used and which numbers it claims.

A `Claim` is one number from the paper, with where it comes from and the
tolerance within which a reproduced value counts as agreeing. A number that the
paper's accessible text does not give stays `None`; the claim then carries its
qualitative statement in `text` and can only be judged "not run at this scale"
or by a directional comparison the reproduction module defines.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Claim:
    """One claimed number: `claimed` is the paper's value of `metric` on `arm`."""

    id: str
    text: str
    metric: str  # a key of a run's final metrics, e.g. "test/errors"
    arm: str  # the arm whose runs measure it
    claimed: float | None  # None: not found in the paper (n.f.)
    source: str  # "Section 3", "Table 2, row 3", "official README"
    tolerance: float = 0.0  # absolute, in the metric's unit
    paper_baseline: float | None = None
    scales: tuple[str, ...] = ("cpu", "paper")  # where a verdict is given (smoke data is synthetic)
    # A derived claim compares two arms: measured = metric(arm) - metric(minus_arm).
    minus_arm: str | None = None
    # What kind of statement the paper makes (DESIGN.md, "Claims"): "point" (claimed +- tolerance),
    # "at_least" ("upwards of"), "at_most" ("up to": a value below is consistent), "range"
    # ([claimed, claimed_high]) or "ordering" (the metric increases along `arms`, paired by seed).
    kind: str = "point"
    claimed_high: float | None = None
    arms: tuple[str, ...] = ()
    cost: str = "seconds"  # a speedup claim's cost to target: seconds, steps, samples or flops

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.kind == "range" and (self.claimed is None or self.claimed_high is None
                                     or self.claimed_high < self.claimed):
            raise ValueError(f"claim {self.id}: a range needs claimed <= claimed_high")
        if self.kind == "ordering" and len(self.arms) < 2:
            raise ValueError(f"claim {self.id}: an ordering needs at least two arms")
        if self.cost not in COSTS:
            raise ValueError(f"claim {self.id}: cost '{self.cost}' is not one of {', '.join(COSTS)}")


KINDS = ("point", "at_least", "at_most", "range", "ordering")
COSTS = ("seconds", "steps", "samples", "flops")


@dataclass(frozen=True)
class PaperCard:
    """Citation, data and claims of one surveyed paper."""

    id: str
    title: str
    authors: str
    venue: str
    year: int
    summary: str
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    claims: tuple[Claim, ...] = ()
    arxiv: str | None = None
    bibtex: str = ""
    notes: str = ""  # choices this reproduction made where the paper is silent
    family: str = "arithmetic"  # thesis chapter: arithmetic, model, data, search, distributed
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None

    def summary_dict(self) -> dict:
        """The part of the card a results file carries, so reports need no imports."""
        return {
            "title": self.title,
            "authors": self.authors,
            "venue": self.venue,
            "year": self.year,
            "arxiv": self.arxiv,
            "url": self.url,
            "summary": self.summary,
            "notes": self.notes,
            "family": self.family,
            "bibtex": self.bibtex,  # the PDF's bibliography, so the report needs no paper modules
        }
