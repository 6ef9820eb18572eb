"""Soak: many short epochs, a checkpoint after each, the training process SIGKILLed at random
points again and again and resumed; the final run must equal an uninterrupted one bit for bit.

Bounded and seeded: at most ROUNDS kills within BUDGET_S seconds (then the run is finished without
kills), each kill either after a random delay (so it can land anywhere: in an optimizer step, in
torch.save, in fsync, in the evaluation) or at a random named event (a step, half-way through the
checkpoint write, before or after the rename).
"""

from __future__ import annotations

import random
import time

import pytest
from fault_helpers import (
    EVENTS,
    STEPS_PER_EPOCH,
    assert_same_history,
    assert_same_run,
    leftover_temporaries,
    one_thread,
    run_child,
    run_fit,
)

from vaelab import load_checkpoint

EPOCHS = 40
ROUNDS = 60
BUDGET_S = 60.0
SEED = 2024


@pytest.mark.slow
def test_soak_kill_and_resume_at_random_points_loses_nothing(tmp_path):
    reference = tmp_path / "reference.ckpt"
    with one_thread():
        run_fit(reference, EPOCHS)
        tic = time.perf_counter()  # time a second run (the first one pays for imports)
        run_fit(tmp_path / "timing.ckpt", EPOCHS)
    epoch_seconds = (time.perf_counter() - tic) / EPOCHS
    expected = load_checkpoint(reference)["history"]

    path = tmp_path / "soak" / "run.ckpt"
    path.parent.mkdir()
    rng = random.Random(SEED)
    kills = {"timer": 0, "step": 0, "mid-write": 0, "before-replace": 0, "after-replace": 0}
    in_save = 0
    epoch = 0
    deadline = time.monotonic() + BUDGET_S
    for _ in range(ROUNDS):
        if time.monotonic() > deadline or epoch == EPOCHS:
            break
        if rng.random() < 0.5:
            last = run_child(path, EPOCHS, kill_after_s=rng.uniform(0.0, 2 * epoch_seconds))
            if last != "DONE 0":
                kills["timer"] += 1
                in_save += last.split()[0] in EVENTS[1:]
        else:
            event = rng.choice(EVENTS)
            at = min(EPOCHS, epoch + rng.randint(1, 2))
            n = (at - 1) * STEPS_PER_EPOCH + rng.randint(1, STEPS_PER_EPOCH) if event == "step" else at
            last = run_child(path, EPOCHS, kill_at=(event, n))
            assert last == f"{event} {n}"
            kills[event] += 1
            in_save += event != "step"
        # after every kill: a loadable checkpoint (or none yet), never older than before, whose
        # history is exactly the uninterrupted run's first epochs
        if path.exists():
            state = load_checkpoint(path)
            assert state["epoch"] >= epoch, "a kill lost a finished epoch"
            epoch = state["epoch"]
            assert_same_history(state["history"], {k: v[:epoch] for k, v in expected.items()})
        else:
            assert epoch == 0
    assert run_child(path, EPOCHS) == "DONE 0"  # finish without kills
    assert_same_run(reference, path)

    total = sum(kills.values())
    assert total >= 10, f"only {total} kills happened: {kills}"
    assert len(leftover_temporaries(path.parent)) <= total
    print(
        f"\nsoak: {total} SIGKILLs ({kills}; {in_save} inside a checkpoint write), "
        f"{EPOCHS} epochs, final state bit-identical to the uninterrupted run"
    )
