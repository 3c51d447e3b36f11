"""One module per surveyed paper: card, functional form, technique(s), recipe().

Every module is imported here explicitly, which registers its techniques and
base recipes. `PAPERS` maps a paper id to its module.
"""

from reproductions import hinton2015_distillation, micikevicius2018_mixed_precision

PAPERS = {m.CARD.id: m for m in (hinton2015_distillation, micikevicius2018_mixed_precision)}
