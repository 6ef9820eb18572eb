"""Reproduce Burda et al. (2015)'s one-stochastic-layer VAE on MNIST, and measure NLL per CPU-minute.

The paper's model (Burda, Grosse and Salakhutdinov, "Importance weighted autoencoders", section 5):
50 Gaussian latent units; encoder and decoder each with two deterministic layers of 200 tanh units;
Bernoulli likelihood; dynamically binarized MNIST; Adam with beta1 = 0.9, beta2 = 0.999,
epsilon = 1e-4; 3^i passes over the data at learning rate 0.001 * 10^(-i/7) for i = 0..7 (3,280
passes); test log-likelihood estimated by L_5000 on the 10,000 test images. Its Table 1 reports
86.76 nats for the VAE (k = 1) and 85.54 / 84.78 for the IWAE with k = 5 / 50.

Where the paper's text and its code (github.com/yburda/iwae) differ, this script follows the text;
where the text is silent, the code (see ``CHOICES``, which is also written into the JSON). The
model is built from vaelab's parts (``GaussianEncoder``, ``BernoulliLikelihood``, ``VAE``) and
trained by ``vaelab.fit`` with its learning-rate schedule, Adam settings and checkpoints: a killed
run resumes from its last epoch when started again with the same command.

Runs (``--runs``; each writes its stage results into the JSON as soon as they exist):

* ``vae_b128``: the full 3,280-pass schedule at batch 128 (batch 20 costs about 5 hours here);
* ``vae_b20``: the paper's batch 20 for stages i = 0..5 (364 passes), to compare with ``vae_b128``
  after the same stages on the same test images (a paired difference with its standard error);
* ``iwae5_b128``: the IWAE objective with k = 5 (``IWAEObjective(5, "reparam")``), as many stages
  as ``--iwae-stages`` allows;
* ``default_b128``: vaelab's default model (784-400-20 ReLU, ``build_vae()``) with fit's default
  settings (Adam 1e-3, batch 128), evaluated after 1, 4, 13 and 40 epochs: the other curve of
  NLL against minutes of training.

After every stage of ``vae_b128`` and ``default_b128`` (the others: after their last stage): L_5000
on the first 1,000 test images, the curve of NLL against minutes of training. After the last stage
of ``vae_b128`` and ``vae_b20``: L_5000 on all 10,000 test images and the active units
(A_u = Cov_x(E_q[z_u|x]) > 0.01 over the test set, Burda et al.'s definition).

    python benchmarks/reproduce_burda.py                      # all runs, hours (see the README)
    python benchmarks/reproduce_burda.py --runs vae_b20 --threads 1
    python benchmarks/reproduce_burda.py --quick              # about a minute: 1,000 images, tiny k
    python benchmarks/reproduce_burda.py --device cuda        # on a GPU (not measured here)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEED = 0
PAPER = {  # Burda et al. (2015), Table 1, MNIST, one stochastic layer: NLL (nats) and active units
    "vae_k1": {"nll": 86.76, "active_units": 19},
    "iwae_k5": {"nll": 85.54, "active_units": 22},
    "iwae_k50": {"nll": 84.78, "active_units": 25},
}
INDEPENDENT_TF2 = 87.75  # an independent TensorFlow 2 reproduction of the VAE row, all 3,280 passes
INDEPENDENT_TF2_SOURCE = (
    "github.com/nbip/IWAE, README, 'Dynamic binarization' table, 1 importance sample: -87.75 "
    "(TensorFlow 2, the paper's model, minibatch 20 by default)"
)
CHOICES = {
    "data": "all 60,000 MNIST training images (the text; the code holds out the last 400), "
    "binarized dynamically: a fresh Bernoulli draw of every pixel at every step",
    "test": "the 10,000 test images, binarized once with seed 0 (the code draws at evaluation)",
    "architecture": "784-200-200-(50+50) tanh encoder (mean and log-variance heads), "
    "50-200-200-784 tanh decoder with Bernoulli logits (the text)",
    "initialization": "Glorot uniform weights and zero biases (the text: 'the heuristic of Glorot & "
    "Bengio'), the decoder's output bias set to logit(clip(mean training image, 0.001, 0.999)) (the "
    "code; the text is silent)",
    "optimizer": "Adam, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-4 (the text; the code's default "
    "beta1 is 0.99, its second moments start at 1 and its epsilon is added to sqrt(v))",
    "schedule": "3^i passes at learning rate 1e-3 * 10^(-i/7), i = 0..7 (the text; the code rounds "
    "the rate to two digits: 7.2e-4, 5.2e-4, ...)",
    "kl": "Monte Carlo: the ELBO's gradient from log w = log p(x|z) + log p(z) - log q(z|x) of one "
    "draw, the paper's Eqn. 7 and its code (fit(kl='mc')); its footnote 1 found the closed-form KL "
    "indistinguishable at k = 1",
    "shuffling": "minibatches reshuffled every pass (fit; the code takes them in a fixed order)",
    "batch_size": "128 for the full schedule (the paper: 20; about 5 hours here), and 20 for the "
    "first 364 passes to measure what that deviation changes",
    "evaluation": "L_5000 (log_likelihood_estimate, k = 5000, generator seeded 0); 1,000 test "
    "images after each stage, all 10,000 after the last",
}
FULL = {"n_train": None, "n_test": 10_000, "n_curve": 1_000, "k_eval": 5_000}
QUICK = {"n_train": 1_000, "n_test": 200, "n_curve": 100, "k_eval": 50}
RUNS = {  # name -> (model, batch size, objective, stages, evaluate on the whole test set at the end)
    "vae_b128": ("burda", 128, "elbo", 8, True),
    "vae_b20": ("burda", 20, "elbo", 6, True),
    "iwae5_b128": ("burda", 128, "iwae5", 6, False),
    "default_b128": ("default", 128, "elbo", 4, False),
}
QUICK_STAGES = 2
CURVE = ("vae_b128", "default_b128")  # evaluated after every stage; the others after their last
COMPARED_STAGE = 5  # vae_b20 and vae_b128 are compared image by image after stage i = 5 (364 passes)


# ----------------------------------------------------------------------------- the model


def burda_vae(train_mean: torch.Tensor, latent_dim: int = 50, hidden: tuple[int, ...] = (200, 200)):
    """The paper's one-stochastic-layer VAE from vaelab's parts (see ``CHOICES`` for the init)."""
    import vaelab
    from vaelab.core.recognition import GaussianEncoder

    def tanh_mlp(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.Tanh()]
        return layers

    class TanhEncoder(GaussianEncoder):
        """input -> 200 tanh -> 200 tanh -> (mu, logvar)."""

        def __init__(self) -> None:
            super().__init__()
            self.input_dim, self.latent_dim = train_mean.numel(), latent_dim
            self.body = nn.Sequential(*tanh_mlp([self.input_dim, *hidden]))
            self.head = nn.Linear(hidden[-1], 2 * latent_dim)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    decoder = nn.Sequential(*tanh_mlp([latent_dim, *hidden]), nn.Linear(hidden[-1], train_mean.numel()))
    decoder.latent_dim = latent_dim
    model = vaelab.VAE(TanhEncoder(), decoder, vaelab.BernoulliLikelihood())
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    with torch.no_grad():
        decoder[-1].bias.copy_(torch.logit(train_mean.clamp(0.001, 0.999)))
    return model


def schedule(stages: int) -> list[tuple[int, float]]:
    """Burda et al.'s schedule: 3^i passes at 1e-3 * 10^(-i/7), for i < stages."""
    return [(3**i, 1e-3 * 10 ** (-i / 7)) for i in range(stages)]


# ----------------------------------------------------------------------------- evaluation


def evaluate(vaelab, model, images: torch.Tensor, k: int) -> dict[str, Any]:
    """L_k per image (nats) on ``images``: the NLL's mean and standard error, and the per-image values."""
    tic = time.perf_counter()
    log_px = vaelab.log_likelihood_estimate(
        model, images.to(model.device), k=k, generator=torch.Generator(model.device).manual_seed(SEED)
    )
    return {**nll_summary(-log_px.double().cpu(), k), "seconds": round(time.perf_counter() - tic, 1)}


def nll_summary(nll: torch.Tensor, k: int) -> dict[str, Any]:
    """The NLL's mean and standard error over the images of ``nll`` (per-image values, kept as ``_per_image``)."""
    return {
        "nll": round(nll.mean().item(), 3),
        "standard_error": round(nll.std().item() / math.sqrt(len(nll)), 3),
        "n_images": len(nll),
        "k": k,
        "_per_image": nll,
    }


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and standard error of a - b, image by image (the same images, the same evaluation noise seed)."""
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return {"mean": round(d.mean().item(), 3), "standard_error": round(d.std().item() / math.sqrt(len(d)), 3)}


# ----------------------------------------------------------------------------- one run


def run_settings(vaelab, name: str, args, sizes: dict, train_mean: torch.Tensor):
    """(model, fit's options, the stage ends in passes, the settings written into the JSON)."""
    from vaelab.estimators import IWAEObjective

    kind, batch_size, objective, stages, _ = RUNS[name]
    if args.quick:
        stages = QUICK_STAGES
    elif name == "iwae5_b128":
        stages = args.iwae_stages
    torch.manual_seed(SEED)
    if kind == "burda":
        model = burda_vae(train_mean)
        lr_schedule = schedule(stages)
        options: dict[str, Any] = {"lr_schedule": lr_schedule, "adam_eps": 1e-4, "adam_betas": (0.9, 0.999)}
        if objective == "elbo":
            options["kl"] = "mc"
        else:
            options["objective"] = IWAEObjective(5, "reparam")
    else:
        model, lr_schedule, options = vaelab.build_vae(), None, {}
    ends = [sum(3**j for j in range(i + 1)) for i in range(stages)]
    settings = {
        "model": kind,
        "batch_size": batch_size,
        "objective": objective,
        "stages": stages,
        "passes": ends[-1],
        "lr_schedule": lr_schedule,
        "adam": {"betas": [0.9, 0.999], "eps": 1e-4 if kind == "burda" else 1e-8},
        "kl": options.get("kl", "analytic"),
        "seed": SEED,
        "parameters": sum(p.numel() for p in model.parameters()),
        **{k: v for k, v in sizes.items()},
    }
    settings = json.loads(json.dumps(settings))  # as the JSON holds it (lists, not tuples): comparable
    return model, {"batch_size": batch_size, **options}, ends, settings


def train_stages(vaelab, name: str, args, sizes: dict, data: dict) -> None:
    """Train ``name`` stage by stage (``fit_stages``), in ``--checkpoints/name``."""
    model, options, ends, _ = run_settings(vaelab, name, args, sizes, data["train"].images.mean(0).cpu())
    fit_stages(vaelab, model, data["train"], Path(args.checkpoints) / name, ends, args, options, f"{name}: ")


def fit_stages(vaelab, model, train, folder: Path, ends: list[int], args, options: dict, label: str = "") -> None:
    """Train ``model`` with fit up to each stage's end (resuming ``folder/run.ckpt``), the stages that
    ``--last-stage`` reaches; after each stage keep a copy of the checkpoint (``stageI.ckpt``) and its
    training minutes (``stageI.json``). Stages with their json already written are skipped."""
    checkpoint = folder / "run.ckpt"
    for i, end in enumerate(ends[: reached(args, ends)]):
        if (folder / f"stage{i}.json").exists():
            continue
        history = vaelab.fit(
            model,
            train,
            None,
            epochs=end,
            device=args.device,
            seed=SEED,
            checkpoint=checkpoint,
            progress=None if not args.quiet else False,
            **options,
        )
        minutes = sum(history.seconds) / 60
        shutil.copyfile(checkpoint, folder / f"stage{i}.ckpt")
        meta = {
            "passes": end,
            "train_minutes": round(minutes, 2),
            "train_elbo_last_pass": round(history.train_elbo[-1], 3),
            "threads": torch.get_num_threads(),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        }
        (folder / f"stage{i}.json").write_text(json.dumps(meta) + "\n")
        print(f"{label}stage {i} trained ({end} passes, {minutes:.1f} min of training)", flush=True)


def evaluate_stages(vaelab, name: str, args, sizes: dict, data: dict, record: dict, save) -> bool:
    """Evaluate the stage snapshots of ``name`` not yet in the JSON: every stage of a run on the
    curve (``CURVE``), else the last; the last stage of a final run on the whole test set (its
    first n_curve images give the stage's point: the same images and noise as a curve evaluation).
    Returns whether all are done (False: a snapshot is not there yet)."""
    from vaelab.train.checkpoint import load_checkpoint, restore_model
    from vaelab.train.training import learning_rate

    model, _, ends, settings = run_settings(vaelab, name, args, sizes, data["train"].images.mean(0).cpu())
    model.to(args.device)
    final = RUNS[name][4]
    entry = record["runs"].get(name, {})
    if entry.get("settings") != settings:
        entry = {"settings": settings, "stages": []}
    record["runs"][name] = entry
    folder = Path(args.checkpoints) / name
    n = reached(args, ends)  # the stages this invocation trains and evaluates
    iwae_stages = QUICK_STAGES if args.quick else args.iwae_stages
    iwae_last = min(iwae_stages, reached(args, list(range(iwae_stages)))) - 1  # compared with vae_b128 there
    for i in range(n) if name in CURVE else [n - 1]:
        end, last = ends[i], i == n - 1
        recorded = any(s["stage"] == i for s in entry["stages"])
        whole_test_set = final and last and entry.get("final", {}).get("stage") != i
        if recorded and not whole_test_set:
            continue
        if not (folder / f"stage{i}.json").exists():
            return False
        meta = json.loads((folder / f"stage{i}.json").read_text())
        restore_model(model, load_checkpoint(folder / f"stage{i}.ckpt", map_location=args.device))
        if whole_test_set:
            result = evaluate(vaelab, model, data["test"].images, sizes["k_eval"])
            summary = vaelab.latent_summary(model, data["test"], threshold=0.01)
            if "final" in entry:  # an earlier stage's whole-test-set result (a run stopped by --last-stage)
                entry.setdefault("earlier_whole_test_set", []).append(entry["final"])
            entry["final"] = {
                **{k: v for k, v in result.items() if not k.startswith("_")},
                "active_units": summary.n_active,
                "activity": [round(v, 5) for v in summary.activity.double().tolist()],
                "train_minutes": meta["train_minutes"],
                "passes": end,
                "stage": i,
                "schedule_complete": i == len(ends) - 1,
            }
            print(
                f"{name}: final NLL {result['nll']:.2f} +- {result['standard_error']:.2f} on all "
                f"{result['n_images']} test images, {summary.n_active} active units",
                flush=True,
            )
            result = nll_summary(result["_per_image"][: sizes["n_curve"]], sizes["k_eval"])
        else:
            result = evaluate(vaelab, model, data["curve"], sizes["k_eval"])
        if recorded:
            save()
            continue
        lr = learning_rate(end, 1e-3, settings["lr_schedule"] or ())  # fit's own rule (its default lr 1e-3)
        stage = {"stage": i, "lr": lr, **meta}
        stage.update({k: v for k, v in result.items() if not k.startswith("_")})
        if (name in ("vae_b128", "vae_b20") and i == min(COMPARED_STAGE, len(ends) - 1)) or (
            name in ("vae_b128", "iwae5_b128") and i == iwae_last
        ):
            stage["nll_per_image"] = [round(v, 3) for v in result["_per_image"].tolist()]
        entry["stages"].append(stage)
        entry["stages"].sort(key=lambda s: s["stage"])
        print(
            f"{name}: stage {i} ({end} passes, {meta['train_minutes']:.1f} min of training): "
            f"NLL {stage['nll']:.2f} +- {stage['standard_error']:.2f} on {stage['n_images']} test images",
            flush=True,
        )
        save()
    return True


def reached(args, ends: list[int]) -> int:
    """How many of the run's stages to train and evaluate now: all, or up to --last-stage."""
    return len(ends) if args.last_stage is None else min(len(ends), args.last_stage + 1)


def compare(record: dict) -> None:
    """Image by image, after the same stage: vae_b20 minus vae_b128 (the batch size) and iwae5_b128
    minus vae_b128 (the objective)."""
    runs = record["runs"]
    if "vae_b128" not in runs:
        return
    b20 = [s for s in runs.get("vae_b20", {}).get("stages", []) if "nll_per_image" in s]
    b128 = {s["stage"]: s for s in runs["vae_b128"]["stages"] if "nll_per_image" in s}
    if b20 and b20[-1]["stage"] in b128:
        a, b = b20[-1], b128[b20[-1]["stage"]]
        record["batch_size_comparison"] = {
            "stage": a["stage"],
            "passes": a["passes"],
            "nll_b20": a["nll"],
            "nll_b128": b["nll"],
            "b20_minus_b128": paired_difference(a["nll_per_image"], b["nll_per_image"]),
            "train_minutes_b20": a["train_minutes"],
            "train_minutes_b128": b["train_minutes"],
        }
    iwae = [s for s in runs.get("iwae5_b128", {}).get("stages", []) if "nll_per_image" in s]
    if iwae and iwae[-1]["stage"] in b128:
        a, b = iwae[-1], b128[iwae[-1]["stage"]]
        record["objective_comparison"] = {
            "stage": a["stage"],
            "passes": a["passes"],
            "nll_iwae5": a["nll"],
            "nll_vae": b["nll"],
            "iwae5_minus_vae": paired_difference(a["nll_per_image"], b["nll_per_image"]),
        }


def calibrate(vaelab, name: str, args, sizes: dict, data: dict, passes: int = 2) -> dict[str, Any]:
    """Seconds per pass of ``name``'s training (its model, batch and objective) on this machine now,
    with --threads threads: the median of ``passes`` timed passes after one warm-up pass, no checkpoint."""
    model, options, _, _ = run_settings(vaelab, name, args, sizes, data["train"].images.mean(0).cpu())
    options = {k: v for k, v in options.items() if k != "lr_schedule"}
    times = []
    for epoch in range(passes + 1):
        tic = time.perf_counter()
        vaelab.fit(model, data["train"], None, epochs=1, device=args.device, seed=epoch, progress=False, **options)
        times.append(time.perf_counter() - tic)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    print(f"{name}: {seconds:.2f} s per pass ({args.threads} threads)", flush=True)
    return {
        "seconds_per_pass": round(seconds, 3),
        "threads": args.threads,
        "passes_timed": passes,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def machine(threads: int, device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="about a minute: 1,000 images, 2 stages, k = 50")
    p.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="default: all")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--last-stage",
        type=int,
        default=None,
        help="train and evaluate only up to stage i = N (the rest stays resumable; the whole test set is "
        "evaluated at stage N); default: every stage",
    )
    p.add_argument("--iwae-stages", type=int, default=6, help="stages of the k = 5 run (default 6: 364 passes)")
    p.add_argument("--results", type=Path, default=None, help="JSON to write (default: results/burda.json)")
    p.add_argument("--checkpoints", default=None, help="folder of the runs' checkpoints (default: runs/burda)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="only time one pass of each run (on an idle machine): the minutes per pass of the NLL-per-minute curve",
    )
    p.add_argument(
        "--only",
        choices=["train", "evaluate"],
        default=None,
        help="train only (stage snapshots), or evaluate only (waiting for a trainer's snapshots); default both",
    )
    args = p.parse_args(argv)
    if args.last_stage is not None and not 0 <= args.last_stage <= 7:
        p.error(f"--last-stage must be from 0 to 7, got {args.last_stage}")
    if not 1 <= args.iwae_stages <= 8:
        p.error(f"--iwae-stages must be from 1 to 8, got {args.iwae_stages}")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    import vaelab

    sizes = QUICK if args.quick else FULL
    out = args.results or (RESULTS / "quick" / "burda.json" if args.quick else RESULTS / "burda.json")
    args.checkpoints = args.checkpoints or str(ROOT / "runs" / ("burda-quick" if args.quick else "burda"))
    train = vaelab.load_mnist("train", binarization="dynamic", limit=sizes["n_train"])
    test = vaelab.load_mnist("test", binarization="dynamic", limit=sizes["n_test"]).fixed_binarization(SEED)
    data = {"train": train, "test": test, "curve": test.images[: sizes["n_curve"]]}
    record = json.loads(out.read_text()) if out.exists() else {}
    record.update(
        {
            "description": "Burda et al. (2015), Table 1, MNIST, one stochastic layer, reproduced with vaelab",
            "paper": PAPER,
            "independent_tf2_reproduction_vae_k1": INDEPENDENT_TF2,
            "independent_tf2_reproduction_source": INDEPENDENT_TF2_SOURCE,
            "choices": CHOICES,
            "units": "test NLL = -L_5000 in nats per image (lower is better); train_minutes: wall-clock "
            "minutes of training (fit's epochs, without checkpoint writes and evaluations)",
            "quick": args.quick,
        }
    )
    record.setdefault("runs", {})
    record["machine"] = machine(args.threads, args.device)
    record["date"] = _dt.date.today().isoformat()

    def save() -> None:
        compare(record)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)

    if args.calibrate:
        record.setdefault("calibration", {})
        for name in args.runs:
            record["calibration"][name] = calibrate(vaelab, name, args, sizes, data)
            save()
        return
    if args.only == "evaluate":  # beside trainers (--only train): evaluate their snapshots as they appear
        waiting = list(args.runs)
        while waiting:
            waiting = [name for name in waiting if not evaluate_stages(vaelab, name, args, sizes, data, record, save)]
            if waiting:
                time.sleep(30)
        save()
        return
    for name in args.runs:
        train_stages(vaelab, name, args, sizes, data)
        if args.only is None:
            evaluate_stages(vaelab, name, args, sizes, data, record, save)
    if args.only is None:
        save()
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
