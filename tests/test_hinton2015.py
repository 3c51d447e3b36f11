"""Hinton et al. (2015): the teacher's max-norm constraint and the distillation loss, against their definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import reproductions.hinton2015_distillation as h


def test_max_norm_projects_hidden_rows_onto_the_ball_and_leaves_the_output_layer_free():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 30), torch.nn.ReLU(),
                                torch.nn.Linear(30, 5))
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(torch.linspace(0.1, 10, layer.weight.shape[0])[:, None])
    before = [m.weight.clone() for m in model if isinstance(m, torch.nn.Linear)]
    h.max_norm_(model, 1.5)
    after = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    for b, a in zip(before[:2], after[:2]):
        norms, old = a.norm(dim=1), b.norm(dim=1)
        assert torch.all(norms <= 1.5 + 1e-5)
        small = old <= 1.5  # rows inside the ball are untouched; the others keep their direction
        assert torch.equal(a[small], b[small])
        assert torch.allclose(F.normalize(a[~small], dim=1), F.normalize(b[~small], dim=1), atol=1e-6)
    assert torch.equal(after[2], before[2])


def test_distillation_loss_at_temperature_one_and_no_soft_weight_is_cross_entropy():
    torch.manual_seed(1)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.allclose(h.distillation_loss(s, t, y, 1.0, 1.0), F.cross_entropy(s, y))
    soft = h.distillation_loss(s, t, y, 4.0, 0.0)  # T^2 KL(teacher_T || student_T)
    p_t = F.softmax(t / 4, dim=1)
    expected = 16 * (p_t * (p_t.log() - F.log_softmax(s / 4, dim=1))).sum(1).mean()
    assert torch.allclose(soft, expected, atol=1e-6)


def test_the_cnn_teacher_reads_the_students_flat_batches_as_images():
    """The distilled student hands the teacher its flattened batch; the teacher must score it as the image it was
    trained on (the same logits as the CNN on the unflattened images)."""
    torch.manual_seed(2)
    teacher = h.flat_cnn((4, 8), 16)((1, 28, 28), 10).eval()
    images = torch.randn(3, 1, 28, 28)
    assert torch.equal(teacher(images.flatten(1)), teacher[1](images))


def test_cpu_recipe_labels_the_cnn_teacher_a_variant_and_trains_students_30_epochs():
    recipe = h.recipe("cpu")
    arms = {a.name: a for a in recipe.arms}
    assert recipe.budget.epochs >= 30 and recipe.baseline_arm == "hard_student"
    assert {n: a.fidelity for n, a in arms.items()} == {"teacher": "variant", "hard_student": "faithful",
                                                      "distilled": "variant"}
    assert isinstance(arms["teacher"].overrides["model"], h.flat_cnn) and arms["teacher"].reference
    paper = {a.name: a for a in h.recipe("paper").arms}
    assert paper["teacher"].fidelity == "faithful" and paper["teacher"].techniques == ("max_norm",)
