"""Everything around ``fit``'s loop that a student need not read: checkpoints, resuming and its
comparison of runs, RNG state, progress, guards against divergence, messages and locking.

``fit`` (training.py) is the loop: batch, ELBO, backward, Adam step, history. It hands the rest
to a ``Run``:

* before the first epoch, ``Run`` locks the checkpoint against a second run writing it at the same
  time, and either seeds the RNGs or resumes: it reads the checkpoint (falling back, loudly, to the
  previous one kept beside it when the newest is damaged), checks that it holds the *same run*
  (data, binarization, model, dtype and every fit setting that changes the result; not epochs,
  device, progress, eval_batch_size or the checkpoint path), and restores model, optimizer,
  history and every RNG state, so the run continues to the bit-identical result on CPU;
* after each step it records the loss and checks it for NaN/Inf (in blocks: a check costs a host
  sync on an accelerator);
* after each epoch it refuses to keep a diverged model (NaN/Inf weights, or a train ELBO 100 times
  worse than the untrained model's) and writes the checkpoint atomically, keeping the previous one.

Trained by several processes (``vaelab.train.distributed``), the ``Run`` of rank 0 locks and writes the
checkpoint, holding every rank's random state; each rank seeds torch's generator with seed + rank, and
the epoch's train terms are summed over the ranks.

Errors raised here carry two versions of their fix: ``str(err)`` in Python terms (a keyword of
``fit``) and ``err.cli_message`` in command-line terms (a flag), which the CLI prints.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.validation import check_integer, check_number, check_positive_int
from ..utils.messages import notice, user_error
from ..utils.progress import progress_bar
from .checkpoint import (
    check_finite_weights,
    load_checkpoint,
    previous_checkpoint,
    restore_model,
    save_checkpoint,
    stored_dtype,
)
from .distributed import Team

__all__ = [
    "Run",
    "TrainingSettings",
    "TrainingDivergedError",
    "NonFiniteLossError",
    "ResumeError",
    "RunMismatchError",
    "RunLockedError",
    "describe_run",
    "run_identity",
    "pixels_fingerprint",
    "compare_runs",
    "read_resumable",
    "checkpoint_lock",
    "notice",
]

DEFAULT_LR = 1e-3  # Adam's learning rate when neither lr nor lr_schedule is given
DIVERGENCE_FACTOR = 100.0  # a train ELBO this many times worse than the untrained model's is divergence


# ----------------------------------------------------------------------------- errors and messages


class VaelabRunError(Exception):
    """An error whose fix reads differently on the command line (``cli_message``)."""

    cli_message: str | None = None


class TrainingDivergedError(VaelabRunError, RuntimeError):
    """Training diverged: the loss or the weights became NaN/Inf, or the ELBO exploded."""


class NonFiniteLossError(TrainingDivergedError):
    """The training loss (or the model's parameters) became NaN or Inf."""


class ResumeError(VaelabRunError, ValueError):
    """A checkpoint cannot be continued (damaged, or ahead of the requested epochs)."""


class RunMismatchError(ResumeError):
    """The checkpoint holds another run. ``differences``: (what, in the file, now) triples."""

    differences: list[tuple[str, Any, Any]]
    path: Path


class RunLockedError(VaelabRunError, RuntimeError):
    """Another process is training into the same checkpoint."""


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainingSettings:
    """The arguments of ``fit`` that change its result (all are stored with the run and compared on
    resume): the optimizer's, the data order's and the objective's own ``settings()``, e.g.
    {"objective": "elbo", "n_samples": 1, "kl": "auto", "beta": 1.0, "free_bits": 0.0}.

    lr: Adam's learning rate (default 1e-3); with an lr_schedule, the schedule alone sets it (giving
    both is an error) and ``lr`` records its first stage's."""

    lr: float | None = None
    batch_size: int = 128
    kl_warmup_epochs: float = 0.0
    seed: int = 0
    lr_schedule: tuple[tuple[int, float], ...] = ()  # (epochs, lr) stages; () = lr throughout
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    objective: dict[str, Any] = field(default_factory=lambda: {"objective": "elbo"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_schedule", _checked_schedule(self.lr_schedule))
        if self.lr_schedule and self.lr is not None:
            raise ValueError(
                f"lr={self.lr} and lr_schedule={[list(s) for s in self.lr_schedule]} both set the learning "
                "rate; give the schedule alone (its first stage is the starting lr)."
            )
        lr = self.lr_schedule[0][1] if self.lr_schedule else DEFAULT_LR if self.lr is None else self.lr
        object.__setattr__(self, "lr", check_number("lr", lr, low=0.0, low_inclusive=False))
        for name in ("batch_size",):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_integer("seed", self.seed, low=0, high=2**64 - 1))
        object.__setattr__(self, "kl_warmup_epochs", check_number("kl_warmup_epochs", self.kl_warmup_epochs))
        betas = tuple(self.adam_betas) if isinstance(self.adam_betas, (tuple, list)) else ()
        if len(betas) != 2:
            raise ValueError(f"adam_betas must be two numbers in [0, 1), e.g. (0.9, 0.999); got {self.adam_betas!r}.")
        betas = tuple(check_number(f"adam_betas[{i}]", b, high=1.0, high_inclusive=False) for i, b in enumerate(betas))
        object.__setattr__(self, "adam_betas", betas)
        object.__setattr__(self, "adam_eps", check_number("adam_eps", self.adam_eps, low=0.0, low_inclusive=False))
        if not isinstance(self.objective, dict) or not isinstance(self.objective.get("objective"), str):
            raise TypeError(f"objective settings must be a dict with an 'objective' name, got {self.objective!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data: the objective's settings first, then the optimizer's and the data's."""
        values = asdict(self)
        del values["objective"]
        values["lr_schedule"] = [list(stage) for stage in self.lr_schedule]
        values["adam_betas"] = list(self.adam_betas)
        return {**self.objective, **values}


def _checked_schedule(schedule: object) -> tuple[tuple[int, float], ...]:
    """``lr_schedule`` as a tuple of (epochs >= 1, lr > 0) pairs, or a clear error."""
    example = "e.g. lr_schedule=[(1, 1e-3), (3, 7.2e-4)]: 1 epoch at 1e-3, then 3 at 7.2e-4"
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, (tuple, list)):
        raise TypeError(f"lr_schedule must be a list of (epochs, lr) pairs, {example}; got {schedule!r}.")
    stages = []
    for stage in schedule:
        ok = isinstance(stage, (tuple, list)) and len(stage) == 2
        epochs, lr = stage if ok else (None, None)
        ok = ok and isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs >= 1
        ok = ok and isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0
        if not ok:
            raise ValueError(
                f"lr_schedule must be (epochs, lr) pairs with epochs >= 1 and lr > 0, {example}; got stage {stage!r}."
            )
        stages.append((int(epochs), float(lr)))
    return tuple(stages)


# ----------------------------------------------------------------------------- what defines a run


def pixels_fingerprint(images: torch.Tensor) -> str:
    """SHA-256 of the pixels (first 16 hex digits): the same data, the same binarization draw."""
    data = images.detach().cpu().contiguous()
    return hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def describe_run(
    model: dict[str, Any],
    dtype: str,
    settings: TrainingSettings,
    train_size: int,
    binarization: str,
    test_size: int | None,
    train_pixels: str | None = None,
    test_pixels: str | None = None,
) -> dict[str, Any]:
    """Everything that defines a run, as plain data (stored in the checkpoint, compared on resume):
    the data (sizes, binarization, and the SHA-256 of the pixels where known: the command line
    compares a run before it loads any data), the model, its dtype and every setting of ``fit``."""
    pixels = {"train_pixels": train_pixels, "test_pixels": test_pixels}
    return {
        "train_size": train_size,
        "binarization": binarization,
        "test_size": test_size,
        **{key: value for key, value in pixels.items() if value is not None},
        "model": model,
        "dtype": dtype,
        **settings.to_dict(),
    }


def run_identity(model: torch.nn.Module, train: Any, test: Any | None, settings: TrainingSettings) -> dict[str, Any]:
    """``describe_run`` of a model and the data ``fit`` trains and evaluates on (the test set already
    binarized). A model built from a config is described by it; any other by its class and the shapes
    of its parameters and buffers (a learnable prior's included)."""
    config = getattr(model, "config", None)
    described = (
        config.to_dict()
        if config is not None
        else {"class": type(model).__name__, "parameters": {n: list(p.shape) for n, p in model.state_dict().items()}}
    )
    return describe_run(
        described,
        str(next(model.parameters()).dtype).replace("torch.", ""),
        settings,
        train_size=len(train),
        binarization=train.binarization,
        test_size=None if test is None else len(test),
        train_pixels=pixels_fingerprint(train.images),
        test_pixels=None if test is None else pixels_fingerprint(test.images),
    )


def compare_runs(saved: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in the file, value now) for every key of ``now`` whose values differ; model config
    keys are compared one by one ("model.latent_dim")."""
    differences = []
    for key, value in now.items():
        old = saved.get(key)
        if key == "model" and isinstance(old, dict) and isinstance(value, dict) and "class" not in value:
            differences += [
                (f"model.{k}", old.get(k), value.get(k))
                for k in sorted(set(old) | set(value))
                if old.get(k) != value.get(k)
            ]
        elif old != value:
            differences.append((key, old, value))
    return differences


def _describe(key: str, value: Any) -> str:
    if key in ("train_pixels", "test_pixels") and isinstance(value, str):
        return f"{key}=sha256:{value}"
    return f"{key}={value!r}"


# ----------------------------------------------------------------------------- reading a checkpoint


def read_resumable(path: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path] | None:
    """The checkpoint to resume from: ``path``, or, when it is damaged (or missing beside a kept
    previous one), the previous checkpoint ``path.prev``. Returns (state, the file it came from),
    or None when neither exists. Reads only; raises ResumeError when nothing usable is left."""
    previous = previous_checkpoint(path)
    if not path.exists() and not previous.exists():
        return None
    try:
        state = load_checkpoint(path, map_location=map_location)
        _check_resumable(path, state)
        return state, path
    except FileNotFoundError:
        problem = f"{path} is missing"
    except ValueError as err:
        problem = str(err).rstrip(".")
    if previous.is_file():
        try:
            state = load_checkpoint(previous, map_location=map_location)
            _check_resumable(previous, state)
            return state, previous
        except ValueError as err:
            problem += f", and the previous one is unusable too ({err})"
    raise user_error(
        ResumeError,
        f"cannot resume: {problem}; start over with resume=False (the damaged file is replaced) or "
        "give another checkpoint path.",
        f"cannot resume: {problem}; start over with --restart (the damaged file is replaced) or choose another --out.",
    )


def _check_checkpoint_path(path: Path) -> None:
    """Before any training: the checkpoint path can be a file (not a folder, not under a file)."""
    if path.is_dir():
        raise user_error(
            ValueError,
            f"checkpoint={str(path)!r} is a folder; pass a file path such as {str(path / 'model.ckpt')!r}.",
            f"{path} is a folder; choose another --out.",
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise user_error(
            ValueError,
            f"checkpoint={str(path)!r} cannot be written: {parent} is a file, not a "
            "folder; pass another checkpoint path.",
            f"{path} cannot be written: {parent} is a file; choose another --out.",
        )


def _check_resumable(path: Path, state: dict[str, Any]) -> None:
    missing = [key for key in ("model", "optimizer", "epoch", "history", "rng", "run") if key not in state]
    if missing:
        raise ValueError(
            f"{path} is a vaelab checkpoint but not of a training run by fit (it lacks {', '.join(missing)})"
        )
    check_finite_weights(path, state)


# ----------------------------------------------------------------------------- locking


_held: dict[str, list] = {}  # lock file -> [fd, count]: the locks this process holds


class checkpoint_lock:
    """Context manager: an exclusive lock on ``.NAME.lock`` beside the checkpoint (released when
    the process ends, even by SIGKILL). Re-entrant within a process; a second process gets
    RunLockedError at once. Where fcntl is missing (Windows) nothing is locked."""

    def __init__(self, path: Path | None):
        self.checkpoint = path
        self.file = None if path is None else str(path.with_name(f".{path.name}.lock"))

    def __enter__(self) -> checkpoint_lock:
        if self.file is None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self.file = None
            return self
        if self.file in _held:
            _held[self.file][1] += 1
            return self
        Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            checkpoint = self.checkpoint
            raise user_error(
                RunLockedError,
                f"another process (pid {owner}) is training into {checkpoint} right now; wait for it to "
                "finish, or give this run another checkpoint path.",
                f"another vaelab run (pid {owner}) is writing into {Path(checkpoint).parent} right now; "
                "wait for it to finish, or choose another --out.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _held[self.file] = [fd, 1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is None or self.file not in _held:
            return
        _held[self.file][1] -= 1
        if _held[self.file][1] == 0:
            fd = _held.pop(self.file)[0]
            os.close(fd)  # closing releases the flock


# ----------------------------------------------------------------------------- RNG state


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- the run


class Run:
    """The conveniences of one ``fit`` call; see the module docstring. Use as a context manager:
    entering locks, resumes or seeds, and opens the progress bar; leaving closes and unlocks."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train: Any,
        test: Any | None,
        settings: TrainingSettings,
        history: Any,
        epochs: int,
        checkpoint: str | os.PathLike | None,
        resume: bool,
        progress: bool | None,
        team: Team | None = None,
        compiled: Any = None,
    ):
        self.model, self.optimizer, self.settings, self.history = model, optimizer, settings, history
        self.team = team if team is not None else Team(next(model.parameters()).device)
        self.compiled = compiled  # fit's CompiledObjective, if any: its compile time goes into the history
        self.writer = self.team.rank == 0  # the process that writes the checkpoint and shows progress
        self.train, self.test = train, test
        self.epochs_wanted = epochs
        self.checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        self.resume, self.progress = resume, progress
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device)  # the data's RNG: shuffles and binarization
        self.steps_per_epoch = -(-len(train) // settings.batch_size)
        self.start_epoch = 0
        self.saved_epoch: int | None = None  # the epoch of the checkpoint this run wrote or resumed from
        self.reference_loss: float | None = None  # the untrained model's loss, for the divergence check
        self.identity: dict[str, Any] | None = None
        self._lock = checkpoint_lock(self.checkpoint if self.writer else None)
        # checking isfinite costs a few small ops (and, on an accelerator, a host sync), so the
        # per-step losses are checked in blocks; the error still names the first bad step
        self._check_every = 10 if self.device.type == "cpu" else 50

    # -- entering and leaving

    def __enter__(self) -> Run:
        if self.checkpoint is not None:
            _check_checkpoint_path(self.checkpoint)
        self._lock.__enter__()
        try:
            found = None
            if self.checkpoint is not None:
                self.identity = run_identity(self.model, self.train, self.test, self.settings)
                if self.team.distributed:  # each rank draws its own noise: the number of ranks defines the run
                    self.identity["world_size"] = self.team.world_size
                if self.resume:
                    found = read_resumable(self.checkpoint, map_location=self.device)
            if found is not None:
                self._resume(*found)
            else:
                torch.manual_seed(self.settings.seed + self.team.rank)  # the noise: rank 0 draws as one process
                self.generator.manual_seed(self.settings.seed)  # the data: the same batches on every rank
            self.bar = progress_bar(
                total=(self.epochs_wanted - self.start_epoch) * self.steps_per_epoch,
                unit="step",
                enabled=self.progress if self.writer else False,
                desc="training",
            )
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.bar.close()
        finally:
            self._lock.__exit__()

    def _resume(self, state: dict[str, Any], source: Path) -> None:
        path = self.checkpoint
        assert path is not None and self.identity is not None
        now = dict(self.identity)
        if "world_size" in state["run"]:
            now.setdefault("world_size", 1)
        differences = compare_runs(state["run"], now)
        if differences:
            listing = "; ".join(
                f"{_describe(k, old)} in the file but {_describe(k, new)} now" for k, old, new in differences
            )
            err = user_error(
                RunMismatchError,
                f"cannot resume from {source}: it holds another run ({listing}); pass the same data, "
                "model and settings to continue it, or resume=False or another checkpoint path to "
                "start over.",
            )
            err.differences, err.path = differences, source  # type: ignore[attr-defined]
            raise err
        saved_epoch = int(state["epoch"])
        if saved_epoch > self.epochs_wanted:
            raise user_error(
                ResumeError,
                f"{source} already holds {saved_epoch} epochs, more than epochs={self.epochs_wanted}; "
                f"pass epochs={saved_epoch} or more to continue it, or resume=False to start over.",
                f"{source} already holds {saved_epoch} epochs, more than --epochs {self.epochs_wanted}; "
                f"pass --epochs {saved_epoch} or more to continue it, or --restart to start over.",
            )
        if source != path and self.writer:
            damaged = path.with_name(path.name + ".damaged")
            if path.exists():
                os.replace(path, damaged)
            save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
            notice(
                f"{path} was damaged or missing; resuming from the previous checkpoint {source} "
                f"(epoch {saved_epoch}){f', the damaged file is kept as {damaged}' if damaged.exists() else ''}."
            )
        if saved_epoch == self.epochs_wanted and self.writer:
            notice(
                f"nothing left to train: {path} already holds {saved_epoch} epochs (epochs={self.epochs_wanted}); "
                "returning its history. Ask for more epochs to train on, or resume=False to start over."
            )
        restore_model(self.model, state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.history.extend(state["history"])
        self.start_epoch = self.saved_epoch = saved_epoch
        self.reference_loss = state.get("reference_loss")
        rng = state["rng"]
        if "ranks" in rng:  # written by several processes: this rank's own noise generator
            rng = {**rng, **rng["ranks"][self.team.rank]}
        _set_rng_state(rng, self.generator)

    # -- the loop's calls

    def epochs(self) -> Iterator[int]:
        """The epochs left to train (1-based), each one timed."""
        for epoch in range(self.start_epoch + 1, self.epochs_wanted + 1):
            self._tic = time.perf_counter()
            self._record: torch.Tensor | None = None  # per step: the loss, then the sum of each term
            self._checked = 0
            yield epoch

    def record_step(self, epoch: int, step: int, loss: torch.Tensor, terms: Any) -> None:
        """Keep the step's loss and the batch sums of the objective's per-example terms (every field of
        ``terms`` that is a (batch,) tensor); stop on NaN/Inf."""
        if self._record is None:  # the first step of an epoch: which terms the objective reports
            fields = terms._asdict().items()
            self._terms = [name for name, value in fields if isinstance(value, torch.Tensor) and value.dim() == 1]
            self._record = torch.zeros(self.steps_per_epoch, 1 + len(self._terms), device=self.device)
        with torch.no_grad():  # three small kernels whatever the number of terms: copy, stack, sum
            row = self._record[step]
            row[0] = loss.detach()
            torch.sum(torch.stack([getattr(terms, name) for name in self._terms]), dim=1, out=row[1:])
        if self.reference_loss is None:
            self.reference_loss = loss.item()
        if (step + 1) % self._check_every == 0 or step + 1 == self.steps_per_epoch:
            self._check_losses(self._checked, step + 1, epoch)
            self._checked = step + 1
        self.bar.update(1)

    def epoch_means(self) -> dict[str, float]:
        """The epoch's mean of each term the objective reported, per image: {"train_<term>": value}."""
        assert self._record is not None, "record_step was never called in this epoch"
        if self.team.distributed:  # every rank's sums; the loss column: the mean of the ranks' losses
            self._record = self.team.sum(self._record)
            self._record[:, 0] /= self.team.world_size
            if not getattr(self, "_reference_shared", False):
                self.reference_loss = sum(self.team.gather(self.reference_loss)) / self.team.world_size
                self._reference_shared = True
        means = (self._record[:, 1:].sum(0) / len(self.train)).tolist()
        return {f"train_{name}": value for name, value in zip(self._terms, means, strict=True)}

    def seconds(self) -> float:
        return time.perf_counter() - self._tic

    def end_epoch(self, epoch: int) -> None:
        """After the history holds the epoch: refuse a diverged model, then write the checkpoint."""
        # the train ELBO where the objective reports one, else minus the mean training loss
        train_elbo = self.history.columns.get("train_elbo", [-self._record[:, 0].mean().item()])[-1]
        test_elbo = self.history.test_elbo[-1]
        self.bar.set_postfix(epoch=epoch, train_elbo=f"{train_elbo:.1f}", test_elbo=f"{test_elbo:.1f}")
        # a finite last loss does not prove the last Adam step left finite weights
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise self._diverged(
                NonFiniteLossError, f"the model's parameters became NaN or Inf at the end of epoch {epoch}"
            )
        pixels = self.train.images.shape[1]
        limit = DIVERGENCE_FACTOR * max(abs(self.reference_loss or 0.0), pixels)
        if not (math.isfinite(train_elbo) and train_elbo > -limit) or (
            self.test is not None and not -limit < test_elbo < math.inf
        ):
            raise self._diverged(
                TrainingDivergedError,
                f"training diverged in epoch {epoch}: the train ELBO is "
                f"{train_elbo:.4g} and the test ELBO {test_elbo:.4g} nats per image, against "
                f"{-(self.reference_loss or 0.0):.4g} for the untrained model",
            )
        if self.compiled is not None:  # the seconds this epoch spent compiling (part of its seconds)
            total = self.compiled.compile_seconds
            self.history.columns.setdefault("compile_seconds", [math.nan] * len(self.history))[-1:] = [
                total - getattr(self, "_compiled_before", 0.0)
            ]
            self._compiled_before = total
        if self.checkpoint is not None:
            rng = _rng_state(self.generator)
            if self.team.distributed:  # every rank's noise generator, gathered by all, written by rank 0
                rng["ranks"] = self.team.gather({k: v for k, v in _rng_state(self.generator).items() if k != "data"})
            if not self.writer:
                return
            save_checkpoint(
                self.checkpoint,
                {
                    "config": self.model.config.to_dict() if getattr(self.model, "config", None) else None,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "epoch": epoch,
                    "history": self.history.to_dict(),
                    "rng": rng,
                    "run": self.identity,
                    "reference_loss": self.reference_loss,
                    "dtype": str(stored_dtype({"model": self.model.state_dict()})).replace("torch.", ""),
                },
                keep_previous=True,
            )
            self.saved_epoch = epoch

    # -- divergence

    def _check_losses(self, start: int, stop: int, epoch: int) -> None:
        """Raise NonFiniteLossError if a loss of steps start..stop-1 (0-based) is NaN or Inf."""
        finite = torch.isfinite(self._record[start:stop, 0])
        if bool(finite.all()):
            return
        step = start + int((~finite).nonzero()[0]) + 1
        value = self._record[step - 1, 0].item()
        raise self._diverged(NonFiniteLossError, f"the training loss became {value} at epoch {epoch}, step {step}")

    def _diverged(self, cls: type[Exception], what: str) -> Exception:
        lr = self.optimizer.param_groups[0]["lr"]
        path, saved = self.checkpoint, self.saved_epoch
        if path is not None and saved is not None:
            last = f"the last good checkpoint is {path} (written after epoch {saved})"
        elif path is not None and path.exists():
            last = f"no checkpoint was written yet by this run (a file already at {path} is not from it)"
        elif path is not None:
            last = "no checkpoint was written yet"
        else:
            last = "no checkpoint was written yet (pass checkpoint=... to keep one)"
        return user_error(
            cls,
            f"{what}; {last}; start again with a lower learning rate than lr={lr} "
            "(resume=False, or another checkpoint path).",
            f"{what}; {last.replace(' (pass checkpoint=... to keep one)', '')}; start again with a lower "
            f"learning rate than --lr {lr} (add --restart, or choose another --out).",
        )
