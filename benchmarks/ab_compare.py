"""Speed of the working tree against another commit (default d2d84f9), interleaved in one run.

    python benchmarks/ab_compare.py                 # about 4 minutes on a 2-core CPU
    python benchmarks/ab_compare.py --base HEAD~3 --rounds 7

The base commit is checked out with ``git worktree add`` into a temporary folder (removed at the end);
each side runs in its own process (``_ab_worker.py``), importing vaelab from its own tree, on the same
MNIST images. Every round times, in alternating order (A B, then B A, ...): a textbook epoch
(pytorch/examples' loop, ``_common.py``), one ``vaelab.fit`` epoch of each side, and one
``vaelab.log_likelihood_estimate`` of each side, with a decoder-GEMM probe around the evaluations.
Printed: per-round and median ratios new/base (the spread of the per-round ratios is the noise a
difference must exceed), and for both sides the targets epoch / textbook <= 0.5 and log p(x) / its
decoder-GEMM bound <= 1.5. Then the batch-20 step of the Burda model (784-200-200-50 tanh, each side's
``reproduce_burda.burda_vae``; ``fit``'s seconds per pass over ``--burda-images`` images / its steps) of each
side, and the new side compiled (``fit(compile=True)``), against the step bound at the same shapes
(``_common.step_bound_seconds``: its matrix products forward and backward + one fused Adam update;
target step / bound <= 2.0). The load average at start and end is printed with them: run it on an idle
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C
import torch
from reproduce_burda import burda_vae

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Side:
    """A worker process importing vaelab from ``root``."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_ab_worker.py"), str(root)],
            cwd=tempfile.gettempdir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **command: object) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker stopped (see its error above)")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=60)


def data_root() -> Path:
    env = os.environ.get("VAELAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vaelab"


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="d2d84f9", help="the commit to compare against (default d2d84f9)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5, at least 3)")
    p.add_argument("--train-images", type=int, default=60_000, help="images per training epoch (default 60000)")
    p.add_argument("--eval-images", type=int, default=100, help="images for log p(x) (default 100)")
    p.add_argument("--k", type=int, default=5000, help="importance samples for log p(x) (default 5000)")
    p.add_argument("--burda-images", type=int, default=6_000, help="images per Burda batch-20 pass (default 6000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in every process (default torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.rounds < 3:
        p.error("--rounds must be at least 3 (the figures are medians over rounds).")
    if args.threads:
        torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the worktree (finally below)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "vaelab"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    load_start = os.getloadavg()
    print(
        f"base {commit} vs working tree (HEAD {head}{', vaelab/ modified' if dirty else ''}); "
        f"{args.rounds} rounds, {args.train_images} training images, log p(x) k={args.k} on {args.eval_images} "
        f"images; {C.cpu_model()}, load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="vaelab-ab-"))
    worktree = tmp / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), commit], cwd=REPO, check=True, capture_output=True
    )
    sides: dict[str, Side] = {}
    try:
        sides = {"base": Side("base", worktree), "new": Side("new", REPO)}
        for side in sides.values():
            info = side.ask(
                op="setup",
                threads=args.threads,
                seed=args.seed,
                train_images=args.train_images,
                eval_images=args.eval_images,
            )
            print(f"{side.name}: vaelab from {info['vaelab']}, {info['threads']} threads")
        device = torch.device("cpu")
        loader = C.classic_loader(data_root(), train=True, limit=args.train_images, device=device)
        torch.manual_seed(args.seed)
        textbook = C.ClassicVAE()
        textbook_opt = torch.optim.Adam(textbook.parameters(), lr=1e-3)

        def run_textbook() -> float:
            return C.timed(lambda: C.classic_train_epoch(textbook, loader, textbook_opt, device), device)

        print("warm-up ...")
        run_textbook()
        for side in sides.values():
            side.ask(op="epoch", seed=1000)
            side.ask(op="eval", k=min(args.k, 200))
        for side in sides.values():  # compiles the new side's step (its compile time is left out)
            for compiled in (False, True):
                side.ask(op="burda_step", batch=20, images=args.burda_images, compile=compiled, seed=1000)
        burda = {"base": [], "new": [], "new_compiled": []}
        burda_bound: list[float] = []
        burda_model = burda_vae(torch.rand(C.PIXELS))  # the bound needs only its shapes
        epochs = {"base": [], "new": []}
        evals = {"base": [], "new": []}
        textbook_s, bound_s = [], []
        for r in range(args.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            textbook_s.append(run_textbook())
            for name in order:
                epochs[name].append(sides[name].ask(op="epoch", seed=r)["seconds"])
            before = C.decoder_gemm_rate(device)
            for name in order:
                evals[name].append(sides[name].ask(op="eval", k=args.k)["seconds"])
            rate = (before + C.decoder_gemm_rate(device)) / 2
            bound_s.append(C.decoder_flops(args.k * args.eval_images) / rate)
            before = C.step_bound_seconds(burda_model, 20, device)
            for name in order:
                for compiled in (False, True) if name == "new" else (False,):
                    key = "new_compiled" if compiled else name
                    reply = sides[name].ask(
                        op="burda_step", batch=20, images=args.burda_images, compile=compiled, seed=r
                    )
                    burda[key].append(reply["seconds_per_step"])
            burda_bound.append((before + C.step_bound_seconds(burda_model, 20, device)) / 2)
            print(
                f"round {r + 1} ({' then '.join(order)}): textbook {textbook_s[-1]:.2f} s; "
                f"epoch base {epochs['base'][-1]:.2f} s, new {epochs['new'][-1]:.2f} s; "
                f"log p(x) base {evals['base'][-1]:.2f} s, new {evals['new'][-1]:.2f} s, bound {bound_s[-1]:.2f} s"
            )
    finally:
        for side in sides.values():
            side.close()
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False, capture_output=True
        )
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=False, capture_output=True)

    def ratios(a: list[float], b: list[float]) -> list[float]:
        return [x / y for x, y in zip(a, b)]

    print("Burda model, batch 20: fit step / step bound (target <= 2.0), medians over the rounds:")
    for key, steps in burda.items():
        if any(s is None for s in steps):
            print(f"  {key:12s} not available in that tree")
            continue
        to_bound = ratios(steps, burda_bound)
        print(
            f"  {key:12s} step {C.median(steps) * 1e6:.0f} us, bound {C.median(burda_bound) * 1e6:.0f} us, "
            f"ratio {C.median(to_bound):.3f} (rounds {spread(to_bound)})"
        )
    if all(s is not None for s in burda["base"]):
        print(
            f"  new / base {C.median(ratios(burda['new'], burda['base'])):.3f}, new compiled / base "
            f"{C.median(ratios(burda['new_compiled'], burda['base'])):.3f}"
        )
    load_end = os.getloadavg()
    epoch_ratio = ratios(epochs["new"], epochs["base"])
    eval_ratio = ratios(evals["new"], evals["base"])
    print(f"\nnew / base (per round {', '.join(f'{v:.3f}' for v in epoch_ratio)}):")
    print(f"  training epoch   median {C.median(epoch_ratio):.3f}  rounds {spread(epoch_ratio)}")
    print(f"  log p(x) k={args.k:<5} median {C.median(eval_ratio):.3f}  rounds {spread(eval_ratio)}")
    print("targets (medians of per-round ratios; the rounds' range is the noise):")
    for name in ("base", "new"):
        to_textbook = ratios(epochs[name], textbook_s)
        to_bound = ratios(evals[name], bound_s)
        print(
            f"  {name:4s} epoch / textbook {C.median(to_textbook):.3f} (rounds {spread(to_textbook)}, "
            f"target <= 0.5); log p(x) / bound {C.median(to_bound):.3f} (rounds {spread(to_bound)}, target <= 1.5)"
        )
    print(
        f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} ({os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
