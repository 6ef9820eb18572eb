"""Training with the importance-weighted bound: the runs chapter 10 cannot afford (k = 50).

Chapter 10 trains a VAE (the ELBO) and an IWAE (L_5) itself and reads the IWAE with k = 50 from the
JSON this script writes. Every run has the chapter's settings: ``vaelab.build_vae(latent_dim=50)``
(784-400-50 MLP, Bernoulli likelihood), the first N_TRAIN dynamically binarized MNIST training
images, Adam(1e-3), batch 128, the same number of epochs, seed 0. The loop is ``vaelab.fit``'s,
written out with the same random draws in the same order (``torch.manual_seed(seed)`` and a data
generator seeded with ``seed``; per epoch the shuffle, per batch the binarization then the noise of
the objective from the global generator, and after each epoch the test ELBO, whose noise comes from
the global generator too), so that it runs before ``fit`` takes an objective, one thread, no checkpoint.

After each run the script records, on the test images binarized once with the seed:
- test L_5000 on the first N_EVAL test images (``vaelab.log_likelihood_estimate``, seeded);
- the test ELBO on N_TEST test images (one draw per image, as ``fit`` computes it) after every epoch;
- the active units, A_u = Cov_x(E_q[z_u|x]) > 0.01 (Burda et al. 2015), on the N_TEST images;
- seconds of training.
The JSON (results/iwae_training.json; results/quick/ with ``--quick``) is rewritten after every run.

    python benchmarks/iwae_training.py            # elbo, iwae k=5 and k=50 (reparam), k=50 (dreg)
    python benchmarks/iwae_training.py --quick    # seconds: 1 epoch on 1,000 images, small k
    python benchmarks/iwae_training.py --runs iwae50 vae   # only these runs (others kept from the JSON)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {"n_train": 20_000, "epochs": 10, "n_test": 2_000, "n_eval": 500, "k_eval": 5_000}
QUICK = {"n_train": 1_000, "epochs": 1, "n_test": 500, "n_eval": 50, "k_eval": 100}
MODEL = {"latent_dim": 50, "hidden_dim": 400}
BATCH, LR, SEED = 128, 1e-3, 0
# name -> (objective, k, estimator); "elbo" is fit's default objective (one sample, closed-form KL)
RUNS = {
    "vae": ("elbo", 1, None),
    "iwae5": ("iwae", 5, "reparam"),
    "iwae50": ("iwae", 50, "reparam"),
    "iwae50_dreg": ("iwae", 50, "dreg"),
}
QUICK_K = {5: 2, 50: 3}


def train(vaelab, name: str, settings: dict, train_data, test_data, quick: bool) -> dict:
    """One run of fit's loop; returns its record (JSON-ready)."""
    from vaelab.estimators import IWAEObjective
    from vaelab.train.training import make_optimizer

    objective, k, estimator = RUNS[name]
    if quick and k in QUICK_K:
        k = QUICK_K[k]
    torch.manual_seed(SEED)
    model = vaelab.build_vae(**MODEL)
    generator = torch.Generator().manual_seed(SEED)  # fit: the generator is seeded before the first draw
    torch.manual_seed(SEED)
    optimizer = make_optimizer(model, LR)
    step_loss = IWAEObjective(k, estimator) if objective == "iwae" else None
    history = {"epoch": [], "train_elbo": [], "test_elbo": [], "seconds": []}
    tic = time.perf_counter()
    model.train()
    for epoch in range(1, settings["epochs"] + 1):
        start, total_elbo = time.perf_counter(), 0.0
        for x in train_data.batches(BATCH, generator=generator):
            optimizer.zero_grad(set_to_none=True)
            if step_loss is None:
                terms = vaelab.elbo(model, x, validate=False)
                loss = vaelab.training_loss(terms)
            else:
                loss, terms = step_loss(model, x)
            loss.backward()
            optimizer.step()
            total_elbo += terms.elbo.detach().sum().item()
        test_elbo = vaelab.evaluate_elbo(model, test_data)
        history["epoch"].append(epoch)
        history["train_elbo"].append(round(total_elbo / len(train_data), 4))
        history["test_elbo"].append(round(test_elbo, 4))
        history["seconds"].append(round(time.perf_counter() - start, 2))
        print(f"{name}: epoch {epoch}, test ELBO {test_elbo:.2f}, {history['seconds'][-1]:.0f} s", flush=True)
    seconds = time.perf_counter() - tic
    model.eval()
    x_eval = test_data.images[: settings["n_eval"]]
    log_px = vaelab.log_likelihood_estimate(
        model, x_eval, k=settings["k_eval"], generator=torch.Generator().manual_seed(SEED)
    ).double()
    summary = vaelab.latent_summary(model, test_data, threshold=0.01)
    return {
        "objective": objective,
        "k": k,
        "estimator": estimator,
        "history": history,
        "test_elbo": history["test_elbo"][-1],
        "test_log_px": round(log_px.mean().item(), 4),
        "test_log_px_standard_error": round(log_px.std().item() / math.sqrt(len(log_px)), 4),
        "log_px_per_image": [round(v, 3) for v in log_px.tolist()],
        "active_units": summary.n_active,
        "activity": [round(v, 6) for v in summary.activity.double().tolist()],
        "train_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on 1,000 images, small k (seconds)")
    p.add_argument("--runs", nargs="+", choices=list(RUNS), default=["iwae50", "vae", "iwae5", "iwae50_dreg"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import vaelab

    settings = QUICK if args.quick else FULL
    out = RESULTS / "quick" / "iwae_training.json" if args.quick else RESULTS / "iwae_training.json"
    train_data = vaelab.load_mnist("train", binarization="dynamic", limit=settings["n_train"])
    test_data = vaelab.load_mnist("test", binarization="dynamic", limit=settings["n_test"]).fixed_binarization(SEED)
    record = json.loads(out.read_text()) if out.exists() else {}
    if record.get("settings") != {**settings, **MODEL, "batch_size": BATCH, "lr": LR, "seed": SEED}:
        record = {}  # other settings: start a fresh file
    record.update(
        {
            "description": "chapter 10: VAE vs IWAE trained with the same architecture, data and epochs",
            "settings": {**settings, **MODEL, "batch_size": BATCH, "lr": LR, "seed": SEED},
            "binarization": "train: dynamic; test: the first n_test test images binarized once with the seed",
            "units": "nats per image, summed over the 784 pixels",
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "load_average_at_start": [round(v, 1) for v in os.getloadavg()],
            },
            "date": _dt.date.today().isoformat(),
        }
    )
    record.setdefault("runs", {})
    for name in args.runs:
        record["runs"][name] = train(vaelab, name, settings, train_data, test_data, args.quick)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)
        run = record["runs"][name]
        print(
            f"{name}: L_{settings['k_eval']} {run['test_log_px']:.2f}, test ELBO {run['test_elbo']:.2f}, "
            f"{run['active_units']} active units, {run['train_seconds']:.0f} s -> {out}",
            flush=True,
        )


if __name__ == "__main__":
    main()
