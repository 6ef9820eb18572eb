"""One side of ``ab_compare.py``: a process that imports vaelab from the folder given as its first argument
(a ``git worktree`` of another commit, or the working tree) and times what the parent asks for.

Protocol: one JSON object per line on stdin, one per line on stdout. ``{"op": "setup", ...}`` loads the data
and builds the model; ``{"op": "epoch", "seed": s}`` times one ``vaelab.fit`` epoch; ``{"op": "eval", "k": k}``
times ``vaelab.log_likelihood_estimate`` on the evaluation images; ``{"op": "burda_step", "batch": 20,
"images": n, "compile": false, "seed": s}`` times one ``fit`` pass of the Burda model (built by that tree's
``benchmarks/reproduce_burda.py``) over n dynamically binarized images and replies the seconds per step
(null where that tree cannot: no Burda script, or no ``compile``); ``{"op": "quit"}`` ends it.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time

root = sys.argv[1]
sys.path.insert(0, root)
sys.path.insert(1, os.path.join(root, "benchmarks"))
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
    elif op == "burda_step":
        try:
            from reproduce_burda import burda_vae
        except ImportError:
            reply(seconds_per_step=None)
            continue
        if command.get("compile") and "compile" not in inspect.signature(vaelab.fit).parameters:
            reply(seconds_per_step=None)
            continue
        if "burda" not in state:
            state["burda_train"] = vaelab.load_mnist("train", binarization="dynamic", limit=command["images"])
            torch.manual_seed(0)
            state["burda"] = burda_vae(state["burda_train"].images.mean(0))
        extra = {"compile": True} if command.get("compile") else {}
        train, batch = state["burda_train"], command["batch"]
        tic = time.perf_counter()
        history = vaelab.fit(
            state["burda"],
            train,
            epochs=1,
            batch_size=batch,
            lr=1e-3,
            adam_eps=1e-4,
            kl="mc",
            device="cpu",
            seed=command["seed"],
            progress=False,
            **extra,
        )
        seconds = time.perf_counter() - tic - history.to_dict().get("compile_seconds", [0.0])[-1]
        reply(seconds_per_step=seconds / -(-len(train) // batch))
    elif op == "quit":
        break
