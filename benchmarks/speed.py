"""Training and evaluation speed of vaelab, as ratios measured in one run.

1. Epoch time of ``vaelab.fit`` (grey pixels, binarization "none", Bernoulli likelihood: the
   textbook loss convention) against the textbook MNIST VAE loop (torchvision MNIST + ToTensor +
   DataLoader, see ``_common.py``): same 784-400-20 model, batch 128, same number of steps.
2. Efficiency: vaelab's epoch time divided by the GEMM bound, (dense FLOP of one epoch) /
   (this machine's float32 matmul rate on the 11 GEMMs of one training step, measured in the
   same run).
3. Evaluation: ``vaelab.log_likelihood_estimate`` (importance-weighted, k = 5000 and the quick
   k = 1000) against its decoder-GEMM bound, (decoder FLOP) / (matmul rate at decoder shapes).
5. Softplus, the per-pixel function of the Bernoulli term of every training step: time per call on
   one batch of decoder logits (128 x 784, float32) of torch.log and torch.log1p, and of the value
   and gradient of ``F.softplus`` and of ``vaelab.core.softplus.softplus`` (which uses log, not log1p).
6. Where a small step goes: for the default model (``build_vae()``, 784-400-20 ReLU) and the Burda model
   (784-200-200-50 tanh, ``reproduce_burda.burda_vae``) at batch 20 and 128, the step's bound at the same
   shapes (the model's matrix products forward and backward plus one fused Adam update of its
   parameters, ``_common.step_bound_seconds``), ``fit``'s step (the seconds of one pass over
   ``--step-images`` dynamically binarized images divided by its steps), eager and ``compile=True``,
   and step / bound, with the targets batch 20: <= 2.0, batch 128: <= 1.3. Each round times every
   (model, batch) in alternating order, a bound probe before and after its two passes; the compile
   time (the warm-up pass's ``compile_seconds``) is reported on its own.

The runs are interleaved round by round (baseline and vaelab epochs in alternating order) after
a warm-up; the matmul rate that a vaelab epoch or an evaluation is divided by is the mean of two
probes taken just before and just after it, so both sides see the same machine (a shared machine
changes speed by tens of percent within minutes). Every figure is a median over the rounds. Run
``python benchmarks/speed.py`` (about 5 minutes on a quiet 2-core CPU); ``--quick`` checks
the script in seconds and writes to results/quick/.
"""

from __future__ import annotations

import sys
import time

import _common as C
import torch


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=None, help="interleaved timed epochs per side (default 5, quick 3)")
    p.add_argument("--eval-images", type=int, default=None, help="test images for item 3 (default 1000, quick 50)")
    p.add_argument("--k", type=int, nargs="+", default=None, help="importance samples (default 5000 1000, quick 200)")
    p.add_argument(
        "--step-images", type=int, default=None, help="images per pass for item 6 (default 10240, quick 640)"
    )
    p.add_argument(
        "--parts",
        default="epoch,steps",
        help="comma-separated parts to run: epoch (items 1, 2, 3 and 5), steps (item 6); default both",
    )
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = C.setup(args)
    import vaelab

    parts = set(args.parts.split(","))
    if not parts or parts - {"epoch", "steps"}:
        p.error(f"--parts takes epoch and steps, got {args.parts!r}.")
    rounds = args.rounds or (3 if args.quick else 5)
    if rounds < 3:
        p.error("--rounds must be at least 3 (the figures are medians over rounds).")
    n_train = 3_840 if args.quick else 60_000
    eval_images = args.eval_images or (50 if args.quick else 1_000)
    ks = args.k or ([200] if args.quick else [5000, 1000])
    print(
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{n_train} training images, {rounds} rounds"
    )

    figures: list[dict] = []
    measurements: dict = {}
    settings: dict = {"rounds": rounds, "parts": sorted(parts)}
    if "epoch" in parts:
        epoch_part(vaelab, args, device, rounds, n_train, eval_images, ks, figures, measurements, settings)
    if "steps" in parts:
        step_images = args.step_images or (640 if args.quick else 10_240)
        f, m, st = step_part(vaelab, device, rounds, step_images, args.seed)
        figures += f
        measurements["item6"] = m
        settings.update(st)
    C.print_table(f"speed on {device} ({C.cpu_model()}, {torch.get_num_threads()} threads)", figures)
    C.write_results(
        "speed",
        args,
        device,
        figures,
        measurements=measurements,
        settings=settings,
        command="python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        started=started,
    )


def epoch_part(vaelab, args, device, rounds, n_train, eval_images, ks, figures, measurements, settings) -> None:
    """Items 1, 2, 3 and 5 (``--parts epoch``): adds their figures, measurements and settings."""
    # --- data: vaelab's in-memory tensors and the textbook DataLoader over the same images
    train = vaelab.load_mnist("train", binarization="none", limit=n_train, device=device)
    test = vaelab.load_mnist("test", binarization="none", limit=eval_images, device=device)
    loader = C.classic_loader(vaelab.data_root(), train=True, limit=n_train, device=device)
    steps = len(loader)

    torch.manual_seed(args.seed)
    baseline = C.ClassicVAE().to(device)
    baseline_opt = torch.optim.Adam(baseline.parameters(), lr=1e-3)
    model = vaelab.build_vae()  # 784-400-20 MLP, Bernoulli likelihood: the same model

    def run_baseline() -> float:
        return C.timed(lambda: C.classic_train_epoch(baseline, loader, baseline_opt, device), device)

    def run_vaelab(seed: int) -> float:
        return C.timed(
            lambda: vaelab.fit(model, train, epochs=1, batch_size=C.BATCH, lr=1e-3, device=device, seed=seed), device
        )

    # --- items 1 and 2: warm-up, then interleaved rounds
    print("warm-up ...")
    run_baseline()
    run_vaelab(seed=1000)
    base_s, vae_s, rates, probes = [], [], [], []
    probe = None  # the last matmul probe, reused as the "before" probe when no epoch ran since
    for r in range(rounds):
        order = ("baseline", "vaelab") if r % 2 == 0 else ("vaelab", "baseline")
        for side in order:
            if side == "baseline":
                base_s.append(run_baseline())
                probe = None
                continue
            before = probe if probe is not None else C.train_gemm_rate(device)
            vae_s.append(run_vaelab(r))
            probe = C.train_gemm_rate(device)
            rates.append((before + probe) / 2)  # the rate while this epoch ran: probed just before and after it
            probes.append([before / 1e9, probe / 1e9])
        print(
            f"round {r + 1}: baseline {base_s[-1]:.3f} s, vaelab {vae_s[-1]:.3f} s, "
            f"matmul {rates[-1] / 1e9:.1f} GFLOP/s"
        )
    epoch_flops = C.mlp_train_flops(n_train)
    bound_s = [epoch_flops / rate for rate in rates]
    ratio_baseline = C.median([v / b for v, b in zip(vae_s, base_s)])
    ratio_bound = C.median([v / b for v, b in zip(vae_s, bound_s)])

    # --- item 3: importance-weighted log-likelihood estimate against its decoder-GEMM bound
    model.eval()
    x = test.images
    evaluation = {}
    for k in ks:
        times, eval_rates, eval_probes = [], [], []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        probe = C.decoder_gemm_rate(device)
        for _ in range(3):  # probe, run, probe, run, ...: each run's rate is the mean of the probes around it
            times.append(C.timed(lambda k=k: vaelab.log_likelihood_estimate(model, x, k=k), device))
            before, probe = probe, C.decoder_gemm_rate(device)
            eval_rates.append((before + probe) / 2)
            eval_probes.append([before / 1e9, probe / 1e9])
        bound = [C.decoder_flops(k * len(x)) / rate for rate in eval_rates]
        evaluation[k] = {
            "seconds": times,
            "bound_seconds": bound,
            "decoder_gemm_gflops": [r / 1e9 for r in eval_rates],
            "decoder_gemm_gflops_before_after": eval_probes,
            "images_per_second": len(x) / C.median(times),
            "ratio_to_bound": C.median([t / b for t, b in zip(times, bound)]),
            "seconds_for_10k_images": C.median(times) * 10_000 / len(x),
        }
        if device.type == "cuda":  # chunked: bounded whatever k is
            evaluation[k]["cuda_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        print(
            f"log p(x), k={k}: {C.median(times):.2f} s for {len(x)} images, "
            f"{evaluation[k]['ratio_to_bound']:.2f}x the decoder-GEMM bound"
        )

    # --- item 5: softplus on one batch of decoder logits
    from vaelab.core.softplus import softplus

    logits = 4 * torch.randn(C.BATCH, C.PIXELS, device=device, generator=torch.Generator(device).manual_seed(0))
    positive = logits.abs()
    with_grad = logits.clone().requires_grad_(True)

    def value_and_gradient(f):
        return lambda: torch.autograd.grad(f(with_grad).sum(), with_grad)

    per_call = {  # seconds per call: 1 / (calls per second)
        name: 1.0 / C.repeat_rate(fn, 1.0, device)
        for name, fn in (
            ("log", lambda: torch.log(positive)),
            ("log1p", lambda: torch.log1p(positive)),
            ("torch_softplus_value_and_gradient", value_and_gradient(torch.nn.functional.softplus)),
            ("vaelab_softplus_value_and_gradient", value_and_gradient(softplus)),
        )
    }
    print("softplus on 128 x 784 logits (us per call): " + ", ".join(f"{k} {v * 1e6:.0f}" for k, v in per_call.items()))

    figures += [
        C.figure("train_epoch_vs_baseline", "1. vaelab.fit epoch / textbook epoch", ratio_baseline, 0.5),
        C.figure("train_epoch_vs_gemm_bound", "2. vaelab.fit epoch / GEMM bound", ratio_bound, 2.0),
    ]
    for k in ks:
        figures.append(
            C.figure(
                f"eval_k{k}_vs_gemm_bound",
                f"3. log p(x) k={k} / decoder-GEMM bound",
                evaluation[k]["ratio_to_bound"],
                1.5,
            )
        )
    figures += [
        C.figure("vaelab_epoch_seconds", "vaelab.fit epoch (s)", C.median(vae_s), None, "s"),
        C.figure("baseline_epoch_seconds", "textbook epoch (s)", C.median(base_s), None, "s"),
        C.figure("gemm_bound_seconds", "GEMM bound per epoch (s)", C.median(bound_s), None, "s"),
        C.figure(
            "train_matmul_gflops", "matmul rate, training shapes (GFLOP/s)", C.median(rates) / 1e9, None, "GFLOP/s"
        ),
        C.figure("log1p_vs_log", "5. torch.log1p / torch.log, float32", per_call["log1p"] / per_call["log"], None),
        C.figure(
            "torch_softplus_vs_vaelab",
            "5. F.softplus / vaelab softplus, value and gradient",
            per_call["torch_softplus_value_and_gradient"] / per_call["vaelab_softplus_value_and_gradient"],
            None,
        ),
    ]
    for k in ks:
        figures.append(
            C.figure(
                f"eval_k{k}_seconds_10k",
                f"log p(x) k={k}, 10k images (s, extrapolated)",
                evaluation[k]["seconds_for_10k_images"],
                None,
                "s",
            )
        )
    measurements.update(
        {
            "baseline_epoch_seconds": base_s,
            "vaelab_epoch_seconds": vae_s,
            "train_matmul_gflops": [r / 1e9 for r in rates],
            "train_matmul_gflops_before_after": probes,
            "gemm_bound_seconds": bound_s,
            "epoch_gflop": epoch_flops / 1e9,
            "steps_per_epoch": steps,
            "evaluation": {str(k): v for k, v in evaluation.items()},
            "softplus_seconds_per_call": per_call,
        }
    )
    settings.update(
        {
            "training_images": n_train,
            "batch_size": C.BATCH,
            "lr": 1e-3,
            "model": "784-400-20 MLP, ReLU, Bernoulli (sigmoid/BCE) likelihood, closed-form KL",
            "vaelab": "vaelab.fit(build_vae(), load_mnist('train', binarization='none'))",
            "baseline": "pytorch/examples vae/main.py loop: MNIST(ToTensor()) + DataLoader, Adam",
            "eval_images": len(x),
            "k": ks,
            "eval": "vaelab.log_likelihood_estimate defaults",
        }
    )


# --------------------------------------------------------------------------- item 6: where a small step goes
STEP_TARGETS = {20: 2.0, 128: 1.3}  # fit's step / its bound, issue 24


def step_models(vaelab, train_mean: torch.Tensor) -> dict:
    """name -> (a fresh model, fit's options for it)."""
    from reproduce_burda import burda_vae

    torch.manual_seed(0)
    return {
        "default": (vaelab.build_vae(), {}),
        "burda": (burda_vae(train_mean), {"adam_eps": 1e-4, "kl": "mc"}),
    }


def step_part(vaelab, device: torch.device, rounds: int, n_images: int, seed: int) -> tuple[list, dict, dict]:
    """Item 6: (figures, measurements, settings)."""
    train = vaelab.load_mnist("train", binarization="dynamic", limit=n_images, device=device)
    models = step_models(vaelab, train.images.mean(0).cpu())
    configs = [(name, batch) for name in models for batch in STEP_TARGETS]

    def one_pass(name: str, batch: int, compiled: bool, seed: int) -> tuple[float, float]:
        """(seconds per step of one fit pass, of which compiling), timed around the whole fit call."""
        model, options = models[name]
        history = {}

        def run() -> None:
            history["h"] = vaelab.fit(
                model,
                train,
                epochs=1,
                batch_size=batch,
                lr=1e-3,
                device=device,
                seed=seed,
                compile=compiled,
                **options,
            )

        seconds = C.timed(run, device)
        compiling = history["h"].columns.get("compile_seconds", [0.0])[-1]
        steps = -(-len(train) // batch)
        return (seconds - compiling) / steps, compiling

    compile_seconds = {}
    print("item 6 warm-up (and compiling) ...")
    for name, batch in configs:
        one_pass(name, batch, False, seed=1000)
        compile_seconds[f"{name}_b{batch}"] = one_pass(name, batch, True, seed=1000)[1]
    raw = {f"{name}_b{batch}": {"bound": [], "eager": [], "compiled": []} for name, batch in configs}
    for r in range(rounds):
        for name, batch in configs if r % 2 == 0 else configs[::-1]:
            record = raw[f"{name}_b{batch}"]
            before = C.step_bound_seconds(models[name][0], batch, device)
            modes = (False, True) if r % 2 == 0 else (True, False)
            for compiled in modes:
                record["compiled" if compiled else "eager"].append(one_pass(name, batch, compiled, seed=r)[0])
            record["bound"].append((before + C.step_bound_seconds(models[name][0], batch, device)) / 2)
        print(
            f"round {r + 1}: "
            + "; ".join(
                f"{key} bound {v['bound'][-1] * 1e6:.0f} us, eager {v['eager'][-1] * 1e6:.0f}, "
                f"compiled {v['compiled'][-1] * 1e6:.0f}"
                for key, v in raw.items()
            )
        )
    figures = []
    for name, batch in configs:
        key, v = f"{name}_b{batch}", raw[f"{name}_b{batch}"]
        for mode in ("eager", "compiled"):
            ratio = C.median([s / b for s, b in zip(v[mode], v["bound"])])
            label = f"6. {name} model, batch {batch}: fit step ({mode}) / bound"
            figures.append(C.figure(f"step_{key}_{mode}_vs_bound", label, ratio, STEP_TARGETS[batch]))
        figures += [
            C.figure(
                f"step_{key}_bound_us",
                f"6. {name}, batch {batch}: step bound (us)",
                C.median(v["bound"]) * 1e6,
                None,
                "us",
            ),
            C.figure(
                f"step_{key}_eager_us",
                f"6. {name}, batch {batch}: fit step, eager (us)",
                C.median(v["eager"]) * 1e6,
                None,
                "us",
            ),
            C.figure(
                f"step_{key}_compiled_us",
                f"6. {name}, batch {batch}: fit step, compiled (us)",
                C.median(v["compiled"]) * 1e6,
                None,
                "us",
            ),
            C.figure(
                f"step_{key}_compile_seconds",
                f"6. {name}, batch {batch}: compile time (s, once)",
                compile_seconds[key],
                None,
                "s",
            ),
        ]
    measurements = {"steps": raw, "compile_seconds": compile_seconds}
    settings = {
        "step_images": len(train),
        "step_batches": list(STEP_TARGETS),
        "step_models": {
            "default": "build_vae(): 784-400-20 ReLU MLP, Bernoulli, closed-form KL, Adam(1e-3, eps 1e-8)",
            "burda": "reproduce_burda.burda_vae: 784-200-200-50 tanh, Bernoulli, kl='mc', Adam(1e-3, eps 1e-4)",
        },
        "step_data": "MNIST train, binarization='dynamic'",
        "step_bound": "_common.step_bound_seconds: the Linear layers' GEMMs (forward, weight and input "
        "gradients but the first layer's input gradient) + one fused Adam step; mean of probes before and after",
        "step_targets": {str(b): t for b, t in STEP_TARGETS.items()},
    }
    return figures, measurements, settings


if __name__ == "__main__":
    main()
