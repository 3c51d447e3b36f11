"""`effitrain bench overhead`: the harness against a plain PyTorch loop.

Both train the same model on the same batches for the same number of steps;
they alternate, `repeats` times each, and the median ratio of training seconds
(harness / plain) is printed. Both are timed as the training clock defines it:
from the end of the first (warm-up) step to the last optimizer step, which is
the time every time-to-target figure is made of.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from harness.measure import Budget, Target
from harness.models import small_cnn
from harness.recipes import Arm, Recipe
from harness.runner import Runner, build_optimizer

GOAL = 1.05  # harness / plain, issue 2


def bench_recipe(steps: int) -> Recipe:
    """Small MNIST-shaped CNN on synthetic data, batch 64, no evaluation until the end."""
    return Recipe(name="bench_overhead", scale="smoke", dataset="synthetic", model=small_cnn((16, 32), 128),
                  budget=Budget(steps=steps), target=Target("val/acc", 1.0), optim={"name": "sgd", "lr": 0.01,
                  "momentum": 0.9}, batch_size=64, eval_every_n_steps=10**9, n_val=64,
                  arms=(Arm("baseline"),))


def plain_loop(recipe: Recipe, runner: Runner, seed: int) -> float:
    """Seconds for `steps` optimizer steps of a hand-written loop on the same loader."""
    torch.manual_seed(seed)
    data, train, _, _ = runner.loaders(recipe, seed)
    model = recipe.model(data.input_shape, data.num_classes)
    opt = build_optimizer(recipe.optim, model)
    steps, done = recipe.budget.steps, 0
    t0 = time.perf_counter()
    while done < steps:
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).float(), y).backward()
            opt.step()
            done += 1
            if done == 1:  # the first step is warm-up, off the clock as in the harness
                t0 = time.perf_counter()
            if done == steps:
                break
    return time.perf_counter() - t0


def overhead(steps: int = 200, repeats: int = 5, data_root: str = "datasets") -> float:
    """Print per-repeat timings and the median ratio; return the ratio."""
    recipe = bench_recipe(steps)
    runner = Runner(tracker=None, data_root=data_root, progress=False)
    ratios = []
    for r in range(repeats):
        plain = plain_loop(recipe, runner, seed=r)
        result, _ = runner.run_one(recipe, recipe.arms[0], seed=r)
        harness = result.train_seconds
        ratios.append(harness / plain)
        print(f"repeat {r}: plain {plain:.3f} s, harness {harness:.3f} s, ratio {harness / plain:.3f}")
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"median ratio harness/plain over {repeats} repeats of {steps} steps: {ratio:.3f} ({verdict} goal <= {GOAL})")
    return ratio


def precision(steps: int = 10, batch_size: int = 128) -> dict[str, float]:
    """Median milliseconds per training step of each recipe model in fp32, bf16 and fp16 autocast.

    Answers "does mixed precision pay on this machine?" before a long run: on
    CPUs with AMX-bf16 bf16 convolutions are fast, while torch's CPU fp16
    convolution has no fast kernel.
    """
    from harness.recipes import get_recipe

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out: dict[str, float] = {}
    for name in ("mnist_cnn", "mnist_mlp"):
        recipe = get_recipe(name, "cpu")
        x = torch.randn(batch_size, 1, 28, 28, device=device)
        x = x.flatten(1) if recipe.flatten else x
        y = torch.randint(0, 10, (batch_size,), device=device)
        base = None
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            torch.manual_seed(0)
            model = recipe.model((1, 28, 28), 10).to(device)
            opt = build_optimizer(recipe.optim, model)
            ms = _median_step_ms(model, opt, x, y, dtype, steps if dtype != torch.float16 or device == "cuda" else 3)
            base = base or ms
            out[f"{name}/{label}"] = ms
            print(f"{name:10s} {label}: {ms:8.1f} ms/step  ({base / ms:5.2f}x fp32 speed)", flush=True)
    return out


def _median_step_ms(model, opt, x, y, dtype, steps: int) -> float:
    times = []
    for i in range(steps + 2):  # two warm-up steps are not counted
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def kernels(device: str | None = None, repeats: int = 7, only: str | None = None) -> list[dict]:
    """One line per op: median time and throughput as a fraction of what this machine allows.

    Memory-bound ops are measured against the fp32 copy bandwidth, compute-bound
    ones against a dense fp32 matmul; an op with a baseline (the dense op it
    approximates) also gets the speedup over it, measured side by side.
    """
    from kernels import load_families
    from kernels._common import machine as _machine

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    load_families()
    benches = [b for b in _machine.BENCHES if only is None or only in b.name]
    if not benches:
        raise ValueError(f"no kernel benchmark matches '{only}'; known: {', '.join(b.name for b in _machine.BENCHES)}")
    print(f"device {device}: copy bandwidth {_machine.copy_bandwidth(device) / 1e9:.1f} GB/s, "
          f"fp32 matmul peak {_machine.matmul_peak(device) / 1e9:.0f} GFLOP/s (both measured now)")
    rows = []
    for bench in benches:
        row = _machine.measure(bench, device, repeats)
        rows.append(row)
        print(_kernel_line(row))
    return rows


def _kernel_line(row: dict) -> str:
    scale, unit = (1e9, "GB/s") if row["bound"] == "memory" else (1e9, "GFLOP/s")
    ceiling = "copy bandwidth" if row["bound"] == "memory" else "matmul peak"
    text = (f"{row['op']:<28} {1e3 * row['seconds']:9.2f} ms  {row['rate'] / scale:8.1f} {unit:<7} "
            f"{row['fraction']:.2f} of {ceiling}")
    if "speedup" in row:
        text += f"; {row['speedup']:.2f}x faster than the dense op"
    if row["goal"] is not None:
        value = row.get("speedup", row["fraction"])
        text += f" (goal {row['goal']:g}: {'met' if value >= row['goal'] else 'NOT met'})"
    return text
