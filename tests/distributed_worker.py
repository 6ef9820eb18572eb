"""One process of tests/test_distributed.py, started by torchrun: fit on the synthetic data the test
builds, in the folder given as the first argument (rank 0 writes the checkpoints there).

1. one epoch of one step (15 images, batch 15: slices of 8 and 7 rows), checkpoint one.ckpt, kept as
   one_step.ckpt; 2. the same run resumed to two epochs; 3. a straight two-epoch run, straight.ckpt.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from vaelab import ImageData, build_vae, fit

N = 15


def data() -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(N, 36, generator=g)
    return ImageData(images, torch.zeros(N, dtype=torch.long), binarization="dynamic", image_shape=(6, 6))


def model(seed: int = 0):
    torch.manual_seed(seed)
    return build_vae(latent_dim=3, hidden_dim=16, side=6)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    common = dict(batch_size=N, device="cpu", seed=1, progress=False)
    fit(model(), data(), epochs=1, checkpoint=out / "one.ckpt", **common)  # fit starts the group
    assert dist.is_initialized() and dist.get_world_size() == 2  # and leaves it to the later fits
    rank = int(__import__("os").environ["RANK"])
    if rank == 0:
        shutil.copy(out / "one.ckpt", out / "one_step.ckpt")
    fit(model(seed=5), data(), epochs=2, checkpoint=out / "one.ckpt", **common)  # resumed
    fit(model(), data(), epochs=2, checkpoint=out / "straight.ckpt", **common)
    print(f"rank {rank} done")
