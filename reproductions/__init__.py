"""The built-in papers: one module per surveyed paper (card, functional form, technique(s), recipe()).

This package is a plug-in like any third-party one: the distribution's entry point
`builtin = "reproductions"` (group `effitrain.plugins`) imports it when a registry is first read.
Importing it imports every module here, which registers the module's techniques; each module
that defines CARD and recipe() is registered as a paper. Adding a paper is adding its module
(and its line in params.yaml's paper list, which tests/test_contracts.py keeps in step).
"""

import importlib
import pkgutil

from harness.papers import register_paper

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        register_paper(importlib.import_module(f"{__name__}.{_info.name}"))
