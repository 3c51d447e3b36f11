"""One module per surveyed paper: card, functional form, technique(s), recipe().

Every module is imported here explicitly, which registers its techniques and
base recipes. `PAPERS` maps a paper id to its module.
"""

from reproductions import (
    adelman2018_approximate_tensor_ops,
    gupta2015_fixed_point,
    hinton2015_distillation,
    jia2018_large_batch,
    micikevicius2018_mixed_precision,
    wang2019_gradient_approximation,
    ye2019_sparse_activation_gradients,
)

PAPERS = {m.CARD.id: m for m in (hinton2015_distillation, micikevicius2018_mixed_precision, gupta2015_fixed_point,
                                 ye2019_sparse_activation_gradients, wang2019_gradient_approximation,
                                 adelman2018_approximate_tensor_ops, jia2018_large_batch)}
