"""What runs produce and reports read: the results schema (`schema`), the one atomic writer (`atomic`),
the time-to-accuracy overview (`tta`), the combinability verdicts (`combinability`) and the torch-free
statistics they need (`stats`).

Nothing here imports training code (torch, Lightning, the runner, the matrix), so tables can be read,
checked and reported on a machine without torch.
"""

__all__: list[str] = []
