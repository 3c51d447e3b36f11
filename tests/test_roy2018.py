"""Tree-CNN (roy2018_tree_cnn): the tree's output is a routed log-probability whose cross-entropy is the sum of
its nodes' losses, new classes join the root's most similar child, the first stage never sees the second
stage's validation images, only the changed nodes train, the effort is counted, a killed run resumes exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reproductions.roy2018_tree_cnn as tc
from harness import data as datamod
from harness.experiments.reproduce import run_recipe
from harness.models import mlp, small_cnn
from harness.runner import RunContext, Runner, arm_order
from harness.train.checkpoint import Checkpoint

DATA = "datasets"


def _tree(groups: list[list[int]], num_classes: int, seed: int = 0) -> tc.TreeCNN:
    torch.manual_seed(seed)
    tree = tc.TreeCNN(nn.Linear(5, len(groups)), groups, num_classes)
    for k, group in enumerate(groups):
        if len(group) > 1:
            tree.branches[str(k)] = nn.Linear(5, len(group))
    return tree


def test_the_routed_output_sums_to_one_and_its_cross_entropy_is_the_nodes_losses():
    """Routed by label, each row is a distribution, and its cross-entropy is the root's loss on the child's label
    plus the image's branch loss on its place in the branch: the nodes trained as the paper trains them."""
    groups = [[0, 3], [1], [2, 4, 5]]
    tree = _tree(groups, 6).train()
    x, y = torch.randn(40, 5), torch.arange(40) % 6
    tree.route_labels = y
    out = tree(x)
    assert torch.allclose(out.logsumexp(1), torch.zeros(40), atol=1e-5)
    child = tree.child_of()[y]
    root_loss = F.cross_entropy(tree.root(x), child, reduction="sum")
    branch_loss = 0.0
    for k, group in enumerate(groups):
        if len(group) > 1:
            rows = child == k
            inner = torch.tensor([group.index(int(c)) for c in y[rows]])
            branch_loss = branch_loss + F.cross_entropy(tree.branches[str(k)](x[rows]), inner, reduction="sum")
    assert torch.allclose(F.cross_entropy(out, y, reduction="sum"), root_loss + branch_loss, rtol=1e-5)


def test_a_branch_runs_only_on_the_images_routed_to_it():
    tree = _tree([[0, 1], [2], [3, 4]], 5).train()
    seen: dict[str, int] = {}
    for key, branch in tree.branches.items():
        branch.register_forward_hook(lambda m, a, o, key=key: seen.__setitem__(key, len(a[0])))
    y = torch.tensor([0, 1, 2, 2, 2, 3, 0, 2])
    tree.route_labels = y
    tree(torch.randn(8, 5))
    assert seen == {"0": 3, "2": 1}


def test_evaluation_routes_to_the_root_s_top_child_and_predicts_only_its_classes():
    tree = _tree([[0, 3], [1], [2, 4, 5]], 6).eval()
    x = torch.randn(200, 5)
    with torch.no_grad():
        top = tree.root(x).argmax(1)
        pred = tree(x).argmax(1)
    assert torch.equal(tree.child_of()[pred], top)
    with torch.no_grad():
        assert torch.allclose(tree(x).logsumexp(1), torch.zeros(200), atol=1e-5)  # a distribution: a finite loss
    many = _tree([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [12]], 13).eval()  # the guarantee holds for big children
    with torch.no_grad():
        assert torch.equal(many.child_of()[many(x).argmax(1)], many.root(x).argmax(1))
    for k in (0, 2):  # within a branch, the branch's own argmax
        rows = top == k
        inner = tree.branches[str(k)](x[rows]).argmax(1)
        assert torch.equal(pred[rows], torch.tensor(tree.groups[k])[inner])


def test_new_classes_join_their_most_likely_child_in_order_of_confidence_up_to_max_children():
    like = torch.tensor([[0.1, 0.8, 0.1],  # class 6: child 1, confidently
                         [0.2, 0.7, 0.1],  # class 7: child 1 too, while it has room
                         [0.3, 0.6, 0.1]])  # class 8: child 1 is full (3), so its next best, child 0
    groups = tc.assign(like, [6, 7, 8], [[0], [1], [2]], max_children=3)
    assert groups == [[0, 8], [1, 6, 7], [2]]
    with pytest.raises(ValueError, match="do not fit"):
        tc.assign(like, [6, 7, 8], [[0, 1], [2, 3]], max_children=3)


def test_the_likelihood_is_the_root_s_mean_softmax_per_class():
    root = nn.Linear(4, 3)
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    like = tc.likelihood(root, x, y, [1, 2])
    assert like.shape == (2, 3)
    assert torch.allclose(like[0], F.softmax(root(x[y == 1]), 1).mean(0))
    with pytest.raises(ValueError, match="no training images"):
        tc.likelihood(root, x, y, [7])


def test_the_grown_classifier_keeps_the_old_rows_and_other_weights_are_copied():
    old = mlp((8,))((1, 4, 4), 6)
    new = mlp((8,))((1, 4, 4), 10)
    fresh = new[-1].weight[6:].clone()
    last = len(new) - 1
    assert tc.load_grown(new, old) == [f"{last}.weight", f"{last}.bias"]
    assert torch.equal(new[1].weight, old[1].weight) and torch.equal(new[-1].weight[:6], old[-1].weight)
    assert torch.equal(new[-1].weight[6:], fresh)
    with pytest.raises(ValueError, match="other layers"):
        tc.load_grown(new, mlp((8, 8))((1, 4, 4), 6))


def test_the_first_stage_holds_only_the_first_classes_and_none_of_the_validation_images():
    """The first stage trains on images the second stage neither validates nor tests on."""
    full = datamod.load_dataset("synthetic", DATA)
    first = datamod.load_dataset(tc.FIRST_STAGE["synthetic"], DATA)
    assert first.num_classes == tc.FIRST and int(first.train_y.max()) == tc.FIRST - 1
    assert int(first.test_y.max()) == tc.FIRST - 1 and (first.mean, first.std) == (full.mean, full.std)
    _, (vx, vy) = datamod.split_validation(full, tc.recipe("smoke").n_val, 0)
    held = {bytes(v.numpy()) for v in vx}
    assert not any(bytes(t.numpy()) in held for t in first.train_x)
    assert len(first.train_y) == int((full.train_y < tc.FIRST).sum()) - int((vy < tc.FIRST).sum())


def _stage_two(recipe) -> dict:
    """Every arm of seed 0, the first stage first: {arm: (result, model)}."""
    runner, context, out = Runner(None, DATA, progress=False), None, {}
    for arm in arm_order(recipe):
        if context is None:
            context = RunContext(0, runner.loaders(recipe, 0)[0])
        result, model = runner.run_one(recipe, arm, 0, context)
        context.models[arm.name] = model
        out[arm.name] = (result, model)
    return out


@pytest.fixture(scope="module")
def smoke_runs():
    return _stage_two(tc.recipe("smoke"))


def test_a_tree_of_leaves_trains_exactly_as_its_root_network_alone(smoke_runs):
    """The first stage: a tree with a leaf per class is its root network, the same weights and the same metrics
    as one network of that size trained on the same seed (our control's first stage)."""
    (tree, tree_model), (small, small_model) = smoke_runs["initial_tree"], smoke_runs["initial_small"]
    assert tree.final == pytest.approx(small.final, rel=1e-4) and tree.flops == small.flops
    for a, b in zip(tree_model.root.state_dict().values(), small_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), (a - b).abs().max()  # log_softmax taken twice


def test_the_tree_grows_retrains_only_its_changed_nodes_and_costs_less(smoke_runs):
    (first, start), (tree_run, tree) = smoke_runs["initial_tree"], smoke_runs["tree_cnn"]
    (base_run, base) = smoke_runs["baseline"]
    assert sorted(c for g in tree.groups for c in g) == list(range(10))
    assert all(len(g) <= 3 for g in tree.groups)
    assert len(tree.branches) == sum(len(g) > 1 for g in tree.groups) >= 2
    assert not torch.equal(tree.root.head[-1].weight, start.root.head[-1].weight)  # the root retrained
    # the first stage's network starts the baseline: its classifier grew from 6 to 10 outputs
    assert smoke_runs["initial"][1].head[-1].weight.shape[0] == 6 and base.head[-1].weight.shape[0] == 10
    # effort: fewer FLOPs and weight updates than fine-tuning the whole network, over the same steps and images
    assert tree_run.steps == base_run.steps and tree_run.samples == base_run.samples
    assert tree_run.flops < base_run.flops
    assert tree_run.stats["effort/weight_updates"] < base_run.stats["effort/weight_updates"]
    assert 0 < tree_run.stats["tree_cnn/pool_share"] < 1 and tree_run.stats["tree_cnn/branches"] >= 2
    assert first.final["test/acc"] >= 0 and tree_run.final["test/acc"] >= 0


def test_our_control_fine_tunes_a_network_of_the_tree_s_node_size_from_its_own_first_stage(smoke_runs):
    small, start = smoke_runs["finetune_small"][0], smoke_runs["initial_small"][1]
    assert smoke_runs["baseline"][0].stats["effort/weight_updates"] > small.stats["effort/weight_updates"]
    assert start.head[-1].weight.shape[0] == 6 and small.steps == smoke_runs["tree_cnn"][0].steps
    assert tc.FinetuneClasses(start="initial_small").needs_arms == ("initial_small",)
    with pytest.raises(ValueError, match="start"):
        tc.FinetuneClasses(start="")


def test_the_ledger_charges_each_branch_only_its_routed_images(smoke_runs):
    """The counted step is the root on the whole batch plus each branch on its share: between the root's own
    cost and the root plus every branch on every image."""
    tree_run, tree = smoke_runs["tree_cnn"]
    from torch.utils.flop_counter import FlopCounterMode

    def step_flops(model, x):
        with FlopCounterMode(display=False) as counter:
            F.log_softmax(model(x), 1).sum().backward()
        return counter.get_total_flops()

    x = torch.randn(32, 1, 28, 28)
    root = step_flops(tree.root, x)
    every = root + sum(step_flops(b, x) for b in tree.branches.values())
    per_step = tree_run.flops / tree_run.steps
    assert root < per_step < every


@pytest.mark.parametrize("kill_at", [2, 4])
def test_a_killed_tree_run_resumes_with_the_same_metrics_and_groups(tmp_path, monkeypatch, smoke_runs, kill_at):
    recipe = tc.recipe("smoke")
    runner = Runner(None, DATA, progress=False)
    context = RunContext(0, runner.loaders(recipe, 0)[0],
                         {n: smoke_runs[n][1] for n in ("initial", "initial_tree")})
    whole, model = smoke_runs["tree_cnn"]
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == kill_at:
            raise Killed

    path = tmp_path / "tree.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill)
    with pytest.raises(Killed):
        runner.run_one(recipe, recipe.arm("tree_cnn"), 0, context, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, again = runner.run_one(recipe, recipe.arm("tree_cnn"), 0, context, checkpoint=path,
                                    checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == kill_at
    assert (resumed.steps, resumed.final, resumed.flops) == (whole.steps, whole.final, whole.flops)
    assert again.groups == model.groups and resumed.stats == whole.stats


def test_models_arms_and_splits_it_cannot_use_are_refused():
    assert "TreeCNN" in tc.TreeGrowth.unsupported(small_cnn((4, 8), 16)((1, 28, 28), 10))
    assert tc.TreeGrowth.unsupported(tc.recipe("smoke").arm("tree_cnn").overrides["model"]((1, 28, 28), 10)) is None
    assert "initial" in tc.FinetuneClasses.unsupported(small_cnn((4, 8), 16)((1, 28, 28), 10))
    for bad in (1, 2.5, "3"):
        with pytest.raises(ValueError, match="max_children"):
            tc.TreeGrowth(max_children=bad)
    recipe = tc.recipe("smoke")
    # without the first stage's arm
    only = replace(recipe, arms=tuple(a for a in recipe.arms if a.name != "initial_tree"))
    with pytest.raises(ValueError, match="needs arm"):
        run_recipe(recipe=only, seeds=[0])
    # a validation split the first stage did not leave out
    with pytest.raises(ValueError, match="validation split"):
        tc._check_split(replace(recipe, n_val=100), "tree_cnn")


def test_the_recipes_compare_equal_epochs_on_the_same_pool():
    for scale in ("smoke", "cpu", "paper"):
        recipe = tc.recipe(scale)
        base, tree = (recipe.for_arm(recipe.arm(n)) for n in ("baseline", "tree_cnn"))
        assert (base.budget, base.dataset, base.n_train, base.n_val) == (tree.budget, tree.dataset, tree.n_train,
                                                                         tree.n_val)
        first = recipe.for_arm(recipe.arm("initial"))
        assert first.dataset == tc.FIRST_STAGE[recipe.dataset]
        tc._check_split(base, "test")
