"""Quality at equal budget: vaelab against the textbook loop, and against the published VAE NLL.

A. Grey MNIST, 10 epochs each, same model (784-400-20), batch 128, Adam(1e-3): the test loss as
   the textbook script defines it (binary cross-entropy on the continuous pixels, summed over
   pixels, plus the closed-form KL, one sampled z per image, averaged over the 10k test images),
   computed by the same textbook ``test`` function for both models. Target: vaelab / textbook
   <= 1.005. Both are averaged over ``--test-passes`` passes to shrink the sampling noise.
B. Dynamically binarized MNIST: vaelab's default model (``build_vae()``) trained with
   ``vaelab.fit`` for ``--binarized-epochs`` epochs (the CPU budget; its wall time is reported),
   then the importance-weighted estimate of -log p(x) with k = 5000 on the 10k test images,
   binarized once with a fixed seed. Reported next to Burda et al. (2015), VAE with one
   stochastic layer trained with k = 1: 86.76 nats (their architecture: two deterministic layers
   of 200 tanh units, 50 latent dimensions, 3280 passes over the data). The time of that
   estimate against its decoder-GEMM bound is the full-size figure of item 3 of speed.py.

``python benchmarks/quality.py`` takes about 21 minutes on a quiet 2-core CPU (``--part grey`` or
``--part binarized`` runs one half); ``--quick`` checks the script in seconds.
"""

from __future__ import annotations

import math
import sys
import time

import _common as C
import torch

BURDA_VAE_NLL = 86.76  # Burda, Grosse, Salakhutdinov 2015, Table 1: VAE, 1 stochastic layer, k=1


class _AsTextbook(torch.nn.Module):
    """vaelab's VAE seen through the textbook interface: x -> (sigmoid(decoder), mu, logvar)."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        mu, logvar = self.vae.encode(x.view(-1, C.PIXELS))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.vae.decode(z)), mu, logvar


@torch.no_grad()
def textbook_test_loss(model: torch.nn.Module, loader, device: torch.device, passes: int, seed: int) -> float:
    """The textbook ``test()``: summed loss over the test set / number of test images, averaged
    over ``passes`` passes (each with its own fixed noise seed)."""
    model.eval()
    values = []
    for p in range(passes):
        torch.manual_seed(seed + p)
        total = 0.0
        for data, _ in loader:
            data = data.to(device)
            recon, mu, logvar = model(data)
            total += C.classic_loss(recon, data, mu, logvar).item()
        values.append(total / len(loader.dataset))
    return sum(values) / len(values)


def part_grey(args, device, vaelab, n_train: int, n_test: int) -> tuple[list[dict], dict]:
    epochs = args.epochs
    loader = C.classic_loader(vaelab.data_root(), train=True, limit=n_train, device=device)
    test_loader = C.classic_loader(vaelab.data_root(), train=False, limit=n_test, device=device, shuffle=False)
    train = vaelab.load_mnist("train", binarization="none", limit=n_train, device=device)

    torch.manual_seed(args.seed)
    baseline = C.ClassicVAE().to(device)
    opt = torch.optim.Adam(baseline.parameters(), lr=1e-3)
    tic = time.perf_counter()
    for _ in range(epochs):
        C.classic_train_epoch(baseline, loader, opt, device)
    C.sync(device)
    baseline_s = time.perf_counter() - tic

    torch.manual_seed(args.seed)
    model = vaelab.build_vae()
    tic = time.perf_counter()
    vaelab.fit(model, train, epochs=epochs, batch_size=C.BATCH, lr=1e-3, device=device, seed=args.seed)
    C.sync(device)
    vaelab_s = time.perf_counter() - tic

    base_loss = textbook_test_loss(baseline, test_loader, device, args.test_passes, args.seed)
    vae_loss = textbook_test_loss(_AsTextbook(model), test_loader, device, args.test_passes, args.seed)
    print(
        f"A. grey MNIST, {epochs} epochs: textbook test loss {base_loss:.3f}, vaelab {vae_loss:.3f} "
        f"(nats per image); training {baseline_s:.1f} s vs {vaelab_s:.1f} s"
    )
    figures = [
        C.figure(
            "test_loss_vs_baseline",
            f"4a. test loss after {epochs} epochs, vaelab / textbook",
            vae_loss / base_loss,
            1.005,
        ),
        C.figure("test_loss_vaelab", "vaelab test loss, grey (nats/image)", vae_loss, None, "nats"),
        C.figure("test_loss_baseline", "textbook test loss, grey (nats/image)", base_loss, None, "nats"),
    ]
    measurements = {
        "epochs": epochs,
        "baseline_train_seconds": baseline_s,
        "vaelab_train_seconds": vaelab_s,
        "test_passes": args.test_passes,
        "test_images": len(test_loader.dataset),
    }
    return figures, measurements


def part_binarized(args, device, vaelab, n_train: int, n_test: int) -> tuple[list[dict], dict]:
    train = vaelab.load_mnist("train", binarization="dynamic", limit=n_train, device=device)
    test = vaelab.load_mnist("test", binarization="static", limit=n_test, device=device, seed=args.seed)
    torch.manual_seed(args.seed)
    model = vaelab.build_vae()
    tic = time.perf_counter()
    history = vaelab.fit(model, train, epochs=args.binarized_epochs, device=device, seed=args.seed)
    C.sync(device)
    train_s = time.perf_counter() - tic

    rate_before = C.decoder_gemm_rate(device)
    torch.manual_seed(args.seed)
    tic = time.perf_counter()
    log_px = vaelab.log_likelihood_estimate(model, test.images, k=args.k)
    C.sync(device)
    eval_s = time.perf_counter() - tic
    rate_after = C.decoder_gemm_rate(device)
    rate = (rate_before + rate_after) / 2  # the rate while the estimate ran, as in speed.py
    bound_s = C.decoder_flops(args.k * len(test)) / rate
    nll = -log_px.mean().item()
    se = log_px.std().item() / math.sqrt(len(log_px))
    print(
        f"B. dynamically binarized MNIST, {args.binarized_epochs} epochs ({train_s / 60:.1f} min): "
        f"test NLL (k={args.k}) {nll:.2f} +- {se:.2f} nats; Burda et al. 2015 VAE: {BURDA_VAE_NLL}"
    )
    print(
        f"   log p(x) estimate: {eval_s:.1f} s for {len(test)} images, {eval_s / bound_s:.2f}x the "
        f"decoder-GEMM bound ({bound_s:.1f} s at {rate / 1e9:.0f} GFLOP/s)"
    )
    figures = [
        C.figure(
            "binarized_test_nll",
            f"4b. test NLL, k={args.k}, after {args.binarized_epochs} epochs (nats)",
            nll,
            None,
            "nats",
        ),
        C.figure("burda_vae_nll", "Burda et al. 2015 VAE, 1 stochastic layer (nats)", BURDA_VAE_NLL, None, "nats"),
        C.figure("binarized_train_minutes", "training budget used (min)", train_s / 60, None, "min"),
        C.figure(
            f"eval_k{args.k}_full_vs_gemm_bound",
            f"3. log p(x) k={args.k}, {len(test)} images / bound",
            eval_s / bound_s,
            1.5,
        ),
        C.figure(f"eval_k{args.k}_full_seconds", f"log p(x) k={args.k}, {len(test)} images (s)", eval_s, None, "s"),
    ]
    measurements = {
        "epochs": args.binarized_epochs,
        "train_seconds": train_s,
        "nll_standard_error": se,
        "final_train_elbo": history.train_elbo[-1],
        "eval_seconds": eval_s,
        "eval_bound_seconds": bound_s,
        "decoder_gemm_gflops": [rate_before / 1e9, rate_after / 1e9],
        "test_images": len(test),
        "k": args.k,
    }
    return figures, measurements


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=("grey", "binarized", "both"), default="both")
    p.add_argument("--epochs", type=int, default=None, help="epochs of part A (default 10, quick 1)")
    p.add_argument("--test-passes", type=int, default=3, help="passes over the test set in part A")
    p.add_argument("--binarized-epochs", type=int, default=None, help="training budget of part B (default 100)")
    p.add_argument("--k", type=int, default=None, help="importance samples in part B (default 5000, quick 100)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = C.setup(args)
    import vaelab

    args.epochs = args.epochs or (1 if args.quick else 10)
    args.binarized_epochs = args.binarized_epochs or (1 if args.quick else 100)
    args.k = args.k or (100 if args.quick else 5000)
    n_train, n_test = (3_840, 200) if args.quick else (60_000, 10_000)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    figures, measurements = [], {}
    if args.part in ("grey", "both"):
        f, m = part_grey(args, device, vaelab, n_train, n_test)
        figures += f
        measurements["grey"] = m
    if args.part in ("binarized", "both"):
        f, m = part_binarized(args, device, vaelab, n_train, n_test)
        figures += f
        measurements["binarized"] = m
    C.print_table(f"quality on {device} ({C.cpu_model()}, {torch.get_num_threads()} threads)", figures)
    C.write_results(
        "quality" if args.part == "both" else f"quality_{args.part}",
        args,
        device,
        figures,
        measurements,
        settings={
            "training_images": n_train,
            "test_images": n_test,
            "batch_size": C.BATCH,
            "lr": 1e-3,
            "grey": "binarization 'none', Bernoulli (BCE) loss on grey pixels, textbook test()",
            "binarized": "train: dynamic binarization; test: one fixed binarization (seed); "
            "model: vaelab.build_vae() (784-400-20 MLP, Bernoulli)",
            "reference": "Burda, Grosse, Salakhutdinov 2015 (IWAE paper), Table 1, VAE k=1, "
            "1 stochastic layer: 86.76 nats, NLL estimated with k=5000",
        },
        command="python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        started=started,
    )


if __name__ == "__main__":
    main()
