"""Posterior collapse arising on its own: a beta = 1 VAE with 50 latent dimensions, trained long.

Chapter 9 of the book reads the result instead of training the model itself (tens of epochs do not
fit a chapter's budget). The model is ``vaelab.build_vae(latent_dim=50)`` (784-400-50 MLP, Bernoulli
likelihood), trained with ``vaelab.fit`` on dynamically binarized MNIST (60k images, Adam 1e-3,
batch 128, beta = 1: the plain ELBO, no warm-up, no free bits). After every epoch the script
records, on the 10k test images binarized once with the seed:

- the activity of each latent dimension j, A_j = Cov_x(E_q[z_j | x]) (the variance over the test
  images of the encoder mean mu_phi(x)_j), and the count of active units, A_j > 0.01
  (Burda et al. 2015), also at the thresholds 0.001 and 0.1;
- the mean KL of each dimension, E_x KL(q(z_j | x) || p(z_j)), in nats (their sum is the rate R);
- the test ELBO (one draw of z per image, as ``fit`` computes it) and the train ELBO.

Training uses a checkpoint (``--checkpoint``, default runs/posterior_collapse/model.ckpt, ignored
by git) and a record of the epochs done beside it, so an interrupted run resumes where it stopped.
The JSON (default results/posterior_collapse.json; results/quick/ with ``--quick``) is rewritten
after every epoch with ``"finished": false`` until the last epoch.

    python benchmarks/posterior_collapse.py                 # 100 epochs; about 5 s an epoch on an idle 2-core CPU
    python benchmarks/posterior_collapse.py --quick         # seconds: 2 epochs on 2,000 images
    python benchmarks/posterior_collapse.py --epochs 200    # continues a finished 100-epoch run
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import _common as C
import torch

THRESHOLDS = (0.001, 0.01, 0.1)  # the active-unit rule's threshold (0.01) and one decade either side


def summarize(vaelab, model, test) -> dict:
    """Per-dimension activity and KL of ``model`` on ``test``, as plain lists (JSON)."""
    summary = vaelab.latent_summary(model, test, threshold=0.01)
    activity = summary.activity.double().cpu()
    return {
        "activity": [round(v, 6) for v in activity.tolist()],
        "kl_per_dim": [round(v, 6) for v in summary.kl_per_dim.double().cpu().tolist()],
        "rate": round(summary.kl_per_dim.double().sum().item(), 4),
        "active_units": {f"{t:g}": int((activity > t).sum()) for t in THRESHOLDS},
    }


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default 100, quick 2)")
    p.add_argument("--latent-dim", type=int, default=50, help="latent dimensions (default 50)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint file (default runs/posterior_collapse/model.ckpt, quick: .../quick.ckpt)",
    )
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = C.setup(args)
    import vaelab

    epochs = args.epochs or (2 if args.quick else 100)
    n_train, n_test = (2_000, 500) if args.quick else (60_000, 10_000)
    checkpoint = args.checkpoint or Path("runs/posterior_collapse") / ("quick.ckpt" if args.quick else "model.ckpt")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    progress_file = checkpoint.with_suffix(".epochs.json")
    out = args.out or (
        C.RESULTS / "quick" / "posterior_collapse.json" if args.quick else C.RESULTS / "posterior_collapse.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    train = vaelab.load_mnist("train", binarization="dynamic", device=device, limit=n_train)
    test = vaelab.load_mnist("test", binarization="dynamic", device=device, limit=n_test).fixed_binarization(args.seed)
    settings = {
        "latent_dim": args.latent_dim,
        "hidden_dim": 400,
        "likelihood": "bernoulli",
        "beta": 1.0,
        "kl_warmup_epochs": 0,
        "free_bits": 0.0,
        "lr": 1e-3,
        "batch_size": C.BATCH,
        "seed": args.seed,
        "epochs": epochs,
        "training_images": len(train),
        "test_images": len(test),
        "train_binarization": "dynamic",
        "test_binarization": f"fixed once, seed {args.seed}",
        "active_unit_rule": "A_j = Cov_x(E_q[z_j|x]) > threshold (Burda et al. 2015: 0.01)",
        "thresholds": list(THRESHOLDS),
    }

    records: list[dict] = []
    seconds_before = 0.0  # training time of earlier, interrupted invocations
    if checkpoint.exists() and progress_file.exists():
        saved = json.loads(progress_file.read_text())
        if saved.get("settings", {}) | {"epochs": epochs} != settings:
            raise SystemExit(
                f"{checkpoint} was written with other settings; pass --checkpoint with a new path "
                "to start over, or the same flags to continue it."
            )
        records, seconds_before = saved["records"], saved["seconds"]
    torch.manual_seed(args.seed)
    model = vaelab.build_vae(latent_dim=args.latent_dim, hidden_dim=400)
    if not records:
        model.to(device)
        records.append(
            {
                "epoch": 0,
                "train_elbo": None,
                "test_elbo": vaelab.evaluate_elbo(model, test),
                "seconds": 0.0,
                **summarize(vaelab, model, test),
            }
        )

    tic = time.perf_counter()
    history = None
    for epoch in range(len(records), epochs + 1):
        # fit's `epochs` is the total: with the checkpoint it resumes and trains one more epoch
        history = vaelab.fit(
            model,
            train,
            test,
            epochs=epoch,
            batch_size=C.BATCH,
            lr=1e-3,
            beta=1.0,
            device=device,
            seed=args.seed,
            checkpoint=checkpoint,
            progress=False,
        )
        model.eval()
        records.append(
            {
                "epoch": epoch,
                "train_elbo": round(history.train_elbo[-1], 4),
                "test_elbo": round(history.test_elbo[-1], 4),
                "seconds": round(history.seconds[-1], 2),
                **summarize(vaelab, model, test),
            }
        )
        seconds = seconds_before + time.perf_counter() - tic
        progress_file.write_text(json.dumps({"settings": settings, "records": records, "seconds": seconds}))
        last = records[-1]
        print(
            f"epoch {epoch:3d}: test ELBO {last['test_elbo']:8.2f}, rate {last['rate']:6.2f} nats, "
            f"active units (A > 0.01) {last['active_units']['0.01']}/{args.latent_dim}, "
            f"{last['seconds']:.1f} s",
            flush=True,
        )
        write(out, args, device, settings, records, seconds, finished=epoch == epochs, started=started)
    if history is None:  # nothing left to train: rewrite the JSON from the records
        write(out, args, device, settings, records[: epochs + 1], seconds_before, finished=True, started=started)


def write(
    out: Path,
    args,
    device: torch.device,
    settings: dict,
    records: list[dict],
    seconds: float,
    finished: bool,
    started: float,
) -> None:
    machine = dict(args.machine_at_start)
    if hasattr(os, "getloadavg"):
        machine["load_average_now"] = [round(v, 2) for v in os.getloadavg()]
    final = records[-1]
    record = {
        "benchmark": "posterior_collapse",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/posterior_collapse.py " + " ".join(sys.argv[1:]),
        "quick": bool(args.quick),
        "finished": finished,
        "epochs_done": final["epoch"],
        "training_minutes": round(seconds / 60, 2),
        "machine": machine,
        "settings": settings,
        "final": {
            "epoch": final["epoch"],
            "test_elbo": final["test_elbo"],
            "rate": final["rate"],
            "active_units": final["active_units"],
        },
        "records": records,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
