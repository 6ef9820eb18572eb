"""One side of ``ab_compare.py``: a process that imports vaelab from the folder given as its first argument
(a ``git worktree`` of another commit, or the working tree) and times what the parent asks for.

Protocol: one JSON object per line on stdin, one per line on stdout. ``{"op": "setup", ...}`` loads the data
and builds the model; ``{"op": "epoch", "seed": s}`` times one ``vaelab.fit`` epoch; ``{"op": "eval", "k": k}``
times ``vaelab.log_likelihood_estimate`` on the evaluation images; ``{"op": "quit"}`` ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time

root = sys.argv[1]
sys.path.insert(0, root)
os.environ.setdefault("VAELAB_QUIET", "1")

import torch  # noqa: E402

import vaelab  # noqa: E402


def reply(**values: object) -> None:
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


state: dict = {}
for line in sys.stdin:
    command = json.loads(line)
    op = command["op"]
    if op == "setup":
        if command.get("threads"):
            torch.set_num_threads(command["threads"])
        torch.manual_seed(command["seed"])
        state["train"] = vaelab.load_mnist("train", binarization="none", limit=command["train_images"])
        state["test"] = vaelab.load_mnist("test", binarization="none", limit=command["eval_images"])
        state["model"] = vaelab.build_vae()
        reply(vaelab=os.path.dirname(os.path.abspath(vaelab.__file__)), threads=torch.get_num_threads())
    elif op == "epoch":
        tic = time.perf_counter()
        vaelab.fit(
            state["model"],
            state["train"],
            epochs=1,
            batch_size=128,
            lr=1e-3,
            device="cpu",
            seed=command["seed"],
            progress=False,
        )
        reply(seconds=time.perf_counter() - tic)
    elif op == "eval":
        model = state["model"]
        tic = time.perf_counter()
        vaelab.log_likelihood_estimate(model, state["test"].images, k=command["k"])
        reply(seconds=time.perf_counter() - tic)
    elif op == "quit":
        break
