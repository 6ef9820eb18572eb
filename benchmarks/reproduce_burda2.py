"""Reproduce Burda et al. (2015)'s two-stochastic-layer VAE (k = 1) on MNIST with vaelab, stage by stage.

The paper's model (Burda, Grosse and Salakhutdinov, "Importance weighted autoencoders", section 5;
its code, github.com/yburda/iwae at commit 78a6075, ``experiments.py`` with ``--layers 2``): stochastic
layers of 100 and 50 Gaussian units, q(z1|x): 784-200-200 tanh, q(z2|z1): 100-100-100 tanh, p(z1|z2):
50-100-100 tanh, p(x|z1): 100-200-200 tanh to 784 Bernoulli logits, p(z2) = N(0, I). vaelab builds it with
``build_vae(layers=2)`` (``vaelab.models.hierarchical``) and trains it with ``vaelab.fit``: the ELBO with
its Monte Carlo KL (the paper's Eqn. 7 at k = 1), Adam (0.9, 0.999, eps 1e-4), 3^i passes at
1e-3 * 10^(-i/7) for i = 0..7 (3,280 passes), at batch 128 (the paper: 20; see ``CHOICES``). Its Table 1
reports 85.33 nats for this model; an independent TensorFlow 2 reproduction (nbip/IWAE) 84.83.

After every stage: L_5000 on the first 1,000 test images (the curve of NLL against minutes of training);
after the last: L_5000 on all 10,000 test images and the active units of each stochastic layer
(Cov_x(E_q[z_u|x]) > 0.01). Everything goes into ``results/burda2.json`` as soon as it exists, with
every setting. A killed run continues from its last epoch (fit's checkpoint in ``runs/burda2/``) when
started again with the same command; finished stages are kept as ``stageI.ckpt``.

    python benchmarks/reproduce_burda2.py --calibrate       # minutes: time a pass and L_5000, estimate the run
    python benchmarks/reproduce_burda2.py                   # the full run (hours: see the calibration)
    python benchmarks/reproduce_burda2.py --last-stage 5    # stop after stage 5 (364 passes), resumable
    python benchmarks/reproduce_burda2.py --quick           # seconds: 1,000 images, 2 stages, k = 50
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import reproduce_burda as one_layer  # noqa: E402 - the schedule, the evaluation and the machine's description

SEED = 0
STAGES = 8
PAPER = {"vae_k1": {"nll": 85.33}, "iwae_k5": {"nll": 83.89}}  # Burda et al. (2015), Table 1, two layers
INDEPENDENT_TF2 = {"vae_k1": 84.83, "iwae_k5": 83.48}
INDEPENDENT_TF2_SOURCE = (
    "github.com/nbip/IWAE, README (commit 3a5e38b), n_hidden=[200, 100], n_latent=[100, 50]: the two-layer "
    "VAE at 84.83 and the two-layer IWAE k = 5 at 83.48 nats (TensorFlow 2)"
)
CHOICES = {
    **{k: v for k, v in one_layer.CHOICES.items() if k not in ("architecture", "batch_size", "evaluation")},
    "architecture": "q(z1|x): 784-200-200 tanh -> 100 (mean and log-variance heads), q(z2|z1): 100-100-100 tanh "
    "-> 50; p(z2) = N(0, I), p(z1|z2): 50-100-100 tanh -> 100, p(x|z1): 100-200-200 tanh -> 784 Bernoulli "
    "logits (the text; yburda/iwae 78a6075 experiments.py, layers=2; the code's sigma = exp(linear) is a "
    "log-variance head here, the same family)",
    "batch_size": "128 for the full schedule (the paper: 20)",
    "evaluation": "L_5000 (log_likelihood_estimate, k = 5000, generator seeded 0, vaelab's general path: the "
    "MLP-Bernoulli shortcut does not apply to this decoder); 1,000 test images after each stage, all 10,000 "
    "after the last; active units per layer with E_q[z2|x] averaged over 100 draws of z1 (the code: one draw)",
}
FULL = {"n_train": None, "n_test": 10_000, "n_curve": 1_000, "k_eval": 5_000}
QUICK = {"n_train": 1_000, "n_test": 200, "n_curve": 100, "k_eval": 50}
QUICK_STAGES = 2
BATCH_SIZE = 128


def two_layer_vae(vaelab, train_mean: torch.Tensor):
    """``build_vae(layers=2)`` (Glorot-uniform weights, zero biases) with the decoder's output bias set to
    logit(clip(mean training image, 0.001, 0.999)), as the paper's code does."""
    torch.manual_seed(SEED)
    model = vaelab.build_vae(layers=2)
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.logit(train_mean.clamp(0.001, 0.999)))
    return model


def run_settings(args, sizes: dict) -> dict[str, Any]:
    """Every setting of the run, as the JSON holds it (lists, not tuples): a changed one starts the record over."""
    stages = QUICK_STAGES if args.quick else STAGES
    settings = {
        "model": "build_vae(layers=2): Burda et al.'s two-stochastic-layer VAE",
        "objective": "elbo, k = 1, kl = 'mc'",
        "batch_size": BATCH_SIZE,
        "stages": stages,
        "passes": sum(3**i for i in range(stages)),
        "lr_schedule": one_layer.schedule(stages),
        "adam": {"betas": [0.9, 0.999], "eps": 1e-4},
        "kl": "mc",
        "seed": SEED,
        "binarization": "dynamic (train), the test set binarized once with seed 0",
        **sizes,
    }
    return json.loads(json.dumps(settings))


def fit_options(stages: int) -> dict[str, Any]:
    return {
        "batch_size": BATCH_SIZE,
        "lr_schedule": one_layer.schedule(stages),
        "adam_betas": (0.9, 0.999),
        "adam_eps": 1e-4,
        "kl": "mc",
    }


def ends(stages: int) -> list[int]:
    return [sum(3**j for j in range(i + 1)) for i in range(stages)]


def train_stages(vaelab, args, settings: dict, data: dict) -> None:
    """Train stage by stage with the one-layer script's ``fit_stages`` (resuming its checkpoint, a copy
    of it and its training minutes after each stage), in ``--checkpoints``."""
    model = two_layer_vae(vaelab, data["train"].images.mean(0).cpu())
    options = fit_options(settings["stages"])
    one_layer.fit_stages(vaelab, model, data["train"], Path(args.checkpoints), ends(settings["stages"]), args, options)


def evaluate_stages(vaelab, args, record: dict, data: dict, save) -> None:
    """Evaluate the stage snapshots not yet in the JSON; the last one reached also on the whole test set."""
    settings = record["settings"]
    folder = Path(args.checkpoints)
    stage_ends = ends(settings["stages"])
    n = one_layer.reached(args, stage_ends)
    k = settings["k_eval"]
    for i in range(n):
        last = i == n - 1
        done = any(s["stage"] == i for s in record["stages"])
        whole = last and record.get("final", {}).get("stage") != i
        if done and not whole:
            continue
        meta = json.loads((folder / f"stage{i}.json").read_text())
        model, _ = vaelab.load_model(folder / f"stage{i}.ckpt", device=args.device)
        if whole:
            result = one_layer.evaluate(vaelab, model, data["test"].images, k)
            units = vaelab.active_units(model, data["test"], generator=torch.Generator(model.device).manual_seed(SEED))
            if "final" in record:  # an earlier stage's whole-test-set result (a run stopped by --last-stage)
                record.setdefault("earlier_whole_test_set", []).append(record["final"])
            record["final"] = {
                **{key: v for key, v in result.items() if not key.startswith("_")},
                "active_units": {name: layer.n_active for name, layer in units.items()},
                "activity": {name: [round(v, 5) for v in layer.activity.tolist()] for name, layer in units.items()},
                "train_minutes": meta["train_minutes"],
                "passes": stage_ends[i],
                "stage": i,
                "schedule_complete": i == len(stage_ends) - 1,
            }
            active = ", ".join(f"{name}: {layer.n_active}" for name, layer in units.items())
            print(
                f"final NLL {result['nll']:.2f} +- {result['standard_error']:.2f} on all {result['n_images']} test "
                f"images; active units {active}",
                flush=True,
            )
            result = one_layer.nll_summary(result["_per_image"][: settings["n_curve"]], k)
        else:
            result = one_layer.evaluate(vaelab, model, data["curve"], k)
        if not done:
            stage = {"stage": i, "lr": settings["lr_schedule"][i][1], **meta}
            stage.update({key: v for key, v in result.items() if not key.startswith("_")})
            record["stages"] = sorted([*record["stages"], stage], key=lambda s: s["stage"])
            print(f"stage {i}: NLL {stage['nll']:.2f} +- {stage['standard_error']:.2f} on {stage['n_images']} images")
        save()


def fastest_step(vaelab, model, x: torch.Tensor, blocks: int = 5, steps: int = 20) -> float:
    """Seconds of one training step (ELBO with the Monte Carlo KL, Adam) on the minibatch x: the fastest of
    ``blocks`` blocks of ``steps`` steps."""
    from vaelab.train.training import ELBO, make_optimizer

    objective, optimizer = ELBO(kl="mc"), make_optimizer(model, 1e-4, (0.9, 0.999), 1e-4)
    best = math.inf
    for _ in range(blocks):
        tic = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            objective(model, x)[0].backward()
            optimizer.step()
        best = min(best, (time.perf_counter() - tic) / steps)
    return best


def calibrate(vaelab, args, settings: dict, data: dict, passes: int = 2, eval_images: int = 20) -> dict[str, Any]:
    """Seconds per training pass (median of ``passes`` after a warm-up pass) and per image of L_5000, on this
    machine now, and the hours of the whole run they imply. The CPU seconds of this process are recorded
    beside the wall-clock ones: on a machine shared with other jobs, CPU seconds / threads is closer to
    what an idle machine would take (the load average says how shared it was). And the fastest of ``blocks``
    blocks of 20 Adam steps on one minibatch, times the steps of a pass: the least a contended machine
    needed, a lower bound for the pass."""
    model = two_layer_vae(vaelab, data["train"].images.mean(0).cpu())
    options = {key: v for key, v in fit_options(1).items() if key != "lr_schedule"}
    times, cpu = [], []
    for epoch in range(passes + 1):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        vaelab.fit(model, data["train"], None, epochs=1, device=args.device, seed=epoch, progress=False, **options)
        times.append(time.perf_counter() - tic)
        cpu.append(time.process_time() - cpu_tic)
    per_pass = sorted(times[1:])[len(times[1:]) // 2]
    cpu_per_pass = sorted(cpu[1:])[len(cpu[1:]) // 2]
    batch = torch.bernoulli(data["train"].images[:BATCH_SIZE], generator=torch.Generator().manual_seed(SEED))
    fastest_pass = fastest_step(vaelab, model, batch.to(model.device)) * math.ceil(len(data["train"]) / BATCH_SIZE)
    k = settings["k_eval"]
    images = data["test"].images[:eval_images]
    tic, cpu_tic = time.perf_counter(), time.process_time()
    one_layer.evaluate(vaelab, model, images, k)
    per_image = (time.perf_counter() - tic) / len(images)
    cpu_per_image = (time.process_time() - cpu_tic) / len(images)
    n_evaluated = settings["n_curve"] * (settings["stages"] - 1) + settings["n_test"]
    hours = (per_pass * settings["passes"] + per_image * n_evaluated) / 3600
    cpu_hours = (cpu_per_pass * settings["passes"] + cpu_per_image * n_evaluated) / 3600
    fastest_hours = (fastest_pass * settings["passes"] + per_image * n_evaluated) / 3600
    print(
        f"{per_pass:.2f} s per pass, {per_image:.3f} s per image of L_{k} ({args.threads} threads): "
        f"{settings['passes']} passes and {n_evaluated} image evaluations take about {hours:.1f} hours "
        f"({cpu_hours:.1f} CPU hours, {cpu_hours / args.threads:.1f} hours on {args.threads} idle cores); "
        f"the fastest steps make {fastest_pass:.2f} s per pass, {fastest_hours:.1f} hours",
        flush=True,
    )
    return {
        "seconds_per_pass": round(per_pass, 3),
        "seconds_per_image_of_L_k": round(per_image, 4),
        "k": k,
        "train_images": len(data["train"]),
        "passes": settings["passes"],
        "images_evaluated": n_evaluated,
        "estimated_hours": round(hours, 2),
        "cpu_seconds_per_pass": round(cpu_per_pass, 3),
        "cpu_seconds_per_image_of_L_k": round(cpu_per_image, 4),
        "estimated_hours_on_idle_cores": round(cpu_hours / args.threads, 2),
        "seconds_per_pass_from_fastest_steps": round(fastest_pass, 3),
        "estimated_hours_from_fastest_steps": round(fastest_hours, 2),
        "threads": args.threads,
        "passes_timed": passes,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds: 1,000 images, 2 stages, k = 50")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--last-stage",
        type=int,
        default=None,
        help="train and evaluate only up to stage i = N (the rest stays resumable; the whole test set is "
        "evaluated at stage N); default: every stage",
    )
    p.add_argument("--results", type=Path, default=None, help="JSON to write (default: results/burda2.json)")
    p.add_argument("--checkpoints", default=None, help="folder of the run's checkpoints (default: runs/burda2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--calibrate", action="store_true", help="only time a pass and L_k, and estimate the run's hours")
    args = p.parse_args(argv)
    if args.last_stage is not None and not 0 <= args.last_stage < STAGES:
        p.error(f"--last-stage must be from 0 to {STAGES - 1}, got {args.last_stage}")
    if args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    import vaelab

    sizes = QUICK if args.quick else FULL
    out = args.results or (RESULTS / "quick" / "burda2.json" if args.quick else RESULTS / "burda2.json")
    args.checkpoints = args.checkpoints or str(ROOT / "runs" / ("burda2-quick" if args.quick else "burda2"))
    train = vaelab.load_mnist("train", binarization="dynamic", limit=sizes["n_train"])
    test = vaelab.load_mnist("test", binarization="dynamic", limit=sizes["n_test"]).fixed_binarization(SEED)
    data = {"train": train, "test": test, "curve": test.images[: sizes["n_curve"]]}
    settings = run_settings(args, sizes)
    record = json.loads(out.read_text()) if out.exists() else {}
    if record.get("settings") != settings:  # another run's numbers: start the record over (keep a calibration)
        record = {"calibration": record["calibration"]} if "calibration" in record else {}
    record.update(
        {
            "description": "Burda et al. (2015), Table 1, MNIST, two stochastic layers, VAE (k = 1), reproduced "
            "with vaelab",
            "paper": PAPER,
            "independent_tf2_reproduction": INDEPENDENT_TF2,
            "independent_tf2_reproduction_source": INDEPENDENT_TF2_SOURCE,
            "choices": CHOICES,
            "units": "test NLL = -L_5000 in nats per image (lower is better); train_minutes: wall-clock minutes "
            "of training (fit's epochs, without checkpoint writes and evaluations)",
            "quick": args.quick,
            "settings": settings,
            "machine": one_layer.machine(args.threads, args.device),
            "date": _dt.date.today().isoformat(),
        }
    )
    record.setdefault("stages", [])

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)

    if args.calibrate:
        record["calibration"] = calibrate(vaelab, args, settings, data)
        save()
        return
    train_stages(vaelab, args, settings, data)
    evaluate_stages(vaelab, args, record, data, save)
    save()
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
