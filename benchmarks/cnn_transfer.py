"""lr transfer on a model scaleplan does not ship: a small image ResNet (nn.Conv2d + nn.BatchNorm2d), muP against SP.

The model is written here as a user would write it: a strided 3x3 Conv2d stem (16x16 -> 8x8 pixels) and
BatchNorm2d, then one residual block per stage (two 3x3 Conv2d + BatchNorm2d + ReLU; a 1x1 strided Conv2d +
BatchNorm2d shortcut where the stride and channels change) at width, 2 x width and 4 x width channels on 8x8, 4x4 and
2x2 pixels, global average pooling and an nn.Linear head; roles are inferred by apply_parametrization from the model
at the base width (a conv weight's fan-in is channels x kernel area; BatchNorm's gain and bias are vectors). The task
is made on the fly, nothing downloaded (`TeacherImages`): 16x16 RGB-like images, each a sum of three random colour
gratings and two colour blobs plus pixel noise, labelled by sampling one of 10 classes from a fixed random teacher
CNN's softmax (label noise: the loss has a floor, the teacher's mean entropy). Adam (--optimizer adam, the default) or
SGD with momentum 0.9 (--optimizer sgd, the CNN recipe), each tensor's lr from `param_groups` for that optimizer, with
a cosine decay from the lr to 0 over STEPS steps of BATCH fresh images (no warmup; the schedule
scales every group alike, so muP's ratios are kept); the held-out loss on a fixed set of images against the teacher's
probabilities, in eval mode (BatchNorm's running statistics). The lr grid (2^0.5 steps, one per optimizer) is the same
at every width.
Proxies: widths 8 and 16 with 3 seeds; target: width 64 (4x the widest proxy) with 5 seeds. The prediction at the
target is the widest proxy's best lr, reused; its regret at the target is reported raw and smoothed (validate's local
model) +- one jackknife s.e. over seeds, with the smoothed optimum at each width (how far lr* drifts with width).
Every run is appended to a CSV (--csv; one per optimizer, its header tells them apart) and skipped when already there;
--plot writes the held-out loss vs lr per width, a panel per parametrization.

    OMP_NUM_THREADS=1 python benchmarks/cnn_transfer.py [--optimizer adam|sgd] [--workers 1]

The coordinate check of the same model (the base: the narrowest width):

    PYTHONPATH=benchmarks scaleplan coord-check --model cnn_transfer:coord_model --parametrization mup --widths 8,16,32,64,128
"""

from __future__ import annotations

import argparse
import functools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charlm_training import held_out_after, parametrized, print_transfer_table, read_runs, record_runs
from scaleplan import param_groups
from scaleplan.outputs import pyplot, save_figure
from scaleplan.tasks.base import Task
from scaleplan.validate.regret import group_by_lr

PROXIES, TARGET = (8, 16), 64
SEEDS = {8: 3, 16: 3, 64: 5}
LRS = {"adam": tuple(1e-3 * 2 ** (k / 2) for k in range(15)),  # 0.001 .. 0.128
       "sgd": tuple(2 ** (k / 2 - 8) for k in range(19))}  # 0.0039 .. 2 (scouted at widths 8 and 16 only)
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD (momentum 0.9)"}
OUTPUTS = {"adam": "cnn-transfer", "sgd": "cnn-sgd-transfer"}  # -trials.csv, .png
STEPS, BATCH = 200, 32
VARIANTS = ("mup", "sp")
SIZE, CLASSES = 16, 10
RESULTS = Path(__file__).parent / "results"
FIELDS = ("parametrization", "width", "lr", "seed", "loss")  # then "optimizer", but in Adam's CSV, which predates it
Result = tuple[str, int, float, int, float]


def _images(n: int, generator: torch.Generator, gratings: int = 3, blobs: int = 2, noise: float = 0.3) -> Tensor:
    """n images (n, 3, SIZE, SIZE): colour gratings of low spatial frequency and colour Gaussian blobs, plus pixel noise."""
    coords = torch.linspace(-1.0, 1.0, SIZE)
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(n, *shape, 1, 1, generator=generator)

    angle, freq = uniform(gratings, high=math.pi), uniform(gratings, low=0.5, high=3.0)
    phase = uniform(gratings, high=2 * math.pi)
    waves = torch.sin(math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)  # (n, gratings, SIZE, SIZE)
    cx, cy = uniform(blobs, low=-1.0, high=1.0), uniform(blobs, low=-1.0, high=1.0)
    width = uniform(blobs, low=0.15, high=0.5)
    spots = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))  # (n, blobs, SIZE, SIZE)
    parts = torch.cat([waves, 2 * spots], dim=1)
    colours = torch.randn(n, parts.shape[1], 3, generator=generator) / math.sqrt(parts.shape[1])
    return torch.einsum("nkhw,nkc->nchw", parts, colours) + noise * torch.randn(n, 3, SIZE, SIZE, generator=generator)


class Teacher(nn.Module):
    """The fixed random CNN whose softmax labels the images (each logit standardized on a reference sample, times
    sharpness: the classes come out balanced)."""

    def __init__(self, sharpness: float, seed: int = 1234) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32, CLASSES)
        with torch.no_grad():
            raw = self._raw(_images(4096, torch.Generator().manual_seed(seed)))
        self.shift, self.scale = raw.mean(0), sharpness / raw.std(0)

    def _raw(self, images: Tensor) -> Tensor:
        h = torch.tanh(self.conv2(torch.tanh(self.conv1(images))))
        return self.head(h.mean((2, 3)))

    def forward(self, images: Tensor) -> Tensor:
        return (self._raw(images) - self.shift) * self.scale


@dataclass
class TeacherImages(Task):
    """Classify on-the-fly images into the class a fixed random teacher sampled from its softmax."""

    name: ClassVar[str] = "teacher-images"
    models: ClassVar[tuple[str, ...]] = ()

    sharpness: float = 4.0
    n_eval: int = 1024
    _teacher: Teacher = field(init=False, repr=False)
    _eval: tuple[Tensor, Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._teacher = Teacher(self.sharpness)
        images = _images(self.n_eval, torch.Generator().manual_seed(999))
        with torch.no_grad():
            self._eval = images, F.softmax(self._teacher(images), dim=-1)

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"in_dim": 3, "out_dim": CLASSES}

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        images = _images(batch_size, generator)
        with torch.no_grad():
            probs = F.softmax(self._teacher(images), dim=-1)
        return images, torch.multinomial(probs, 1, generator=generator).squeeze(1)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy against sampled classes (training) or the teacher's probabilities (the held-out set)."""
        return F.cross_entropy(output, target)

    def eval_set(self) -> tuple[Tensor, Tensor]:
        """Fixed images with the teacher's class probabilities as targets: the expected loss, without label sampling noise."""
        return self._eval

    def eval_loss(self, forward: Callable[[Tensor], Tensor], device: torch.device | str = "cpu") -> float:
        """The held-out loss with a model in eval mode (BatchNorm's running statistics, as a user evaluates)."""
        if isinstance(forward, nn.Module):
            forward.eval()
        return super().eval_loss(forward, device)

    def floor(self) -> float:
        """The held-out set's Bayes loss: the teacher's mean entropy."""
        probs = self._eval[1]
        return float(-(probs * probs.log()).sum(-1).mean())


class Block(nn.Module):
    """A residual block: two 3x3 convs with BatchNorm and ReLU; a strided 1x1 conv shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    """A strided stem, three stages at width, 2 x width, 4 x width channels (8, 4, 2 pixels), global average pool and
    a linear head."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stages = nn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2), Block(2 * width, 4 * width, 2))
        self.head = nn.Linear(4 * width, CLASSES)

    def forward(self, images: Tensor) -> Tensor:
        h = self.stages(F.relu(self.stem_bn(self.stem(images))))
        return self.head(h.mean((2, 3)))


def coord_model(width: int) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    """For scaleplan coord-check: the model at `width` and one training batch (the same at every width)."""
    return ResNet(width), TeacherImages().sample_batch(BATCH, torch.Generator().manual_seed(0))


@functools.cache
def _task() -> TeacherImages:
    return TeacherImages()


def held_out_loss(optimizer: str, job: tuple[str, int, float, int]) -> Result:
    """(parametrization, width, lr, seed) -> the held-out loss after training (inf when the loss went non-finite)."""
    variant, width, lr, seed = job
    torch.set_num_threads(1)
    task = _task()
    torch.manual_seed(seed)
    model = parametrized(ResNet, variant, width, PROXIES[0])
    if optimizer == "sgd":  # torch's momentum is linear in the gradient: muP's SGD lrs apply unchanged
        opt = torch.optim.SGD(param_groups(model, lr, optimizer="sgd"), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(param_groups(model, lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / STEPS)))
    opt.register_step_post_hook(lambda *_: schedule.step())  # cosine to 0 after every step, each group's ratio kept
    return variant, width, lr, seed, held_out_after(model, opt, task, STEPS, BATCH, seed)


def plot(results: list[Result], path: Path, optimizer: str) -> Path:
    """Held-out loss (seed mean; diverged lrs left out) vs lr, one line per width, one panel per parametrization."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(5 * len(VARIANTS), 4), sharey=True)
    for ax, variant in zip(axes, VARIANTS):
        for width in (*PROXIES, TARGET):
            rows = [(lr, s, loss) for v, w, lr, s, loss in results if v == variant and w == width]
            points = [p for p in group_by_lr(rows) if p.finite]
            ax.plot([p.lr for p in points], [p.mean for p in points], marker="o", label=f"width {width}")
        ax.set(xscale="log", xlabel=f"base lr ({OPTIMIZERS[optimizer]})", title=variant)
        ax.legend()
    axes[0].set_ylabel("held-out loss")
    fig.suptitle(f"image ResNet on teacher images, {STEPS} steps of {BATCH}")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--csv", type=Path, help="default: results/cnn-transfer-trials.csv (SGD: cnn-sgd-...)")
    parser.add_argument("--plot", type=Path, help="default: results/cnn-transfer.png, SGD's cnn-sgd-transfer.png")
    args = parser.parse_args()
    optimizer, lrs = args.optimizer, LRS[args.optimizer]
    csv_path = args.csv or RESULTS / f"{OUTPUTS[optimizer]}-trials.csv"
    tag = () if optimizer == "adam" else (optimizer,)  # each run's optimizer column (none in Adam's older CSV)
    done = read_runs(csv_path, _parse)
    if any(run[5:] != tag for run in done):
        parser.error(f"{csv_path} holds runs of another optimizer than {optimizer}")
    keys = {r[:4] for r in done}
    jobs = [(v, w, lr, s) for v, w in product(VARIANTS, (*PROXIES, TARGET)) for lr in lrs for s in range(SEEDS[w])]
    todo = sorted((job for job in jobs if job not in keys), key=lambda job: -job[1])  # the widest first
    with ProcessPoolExecutor(args.workers) as pool:
        runs = pool.map(functools.partial(held_out_loss, optimizer), todo)
        record_runs(csv_path, FIELDS + ("optimizer",) * len(tag), (run + tag for run in runs), done)
    planned = set(jobs)
    results = [r[:5] for r in done if r[:4] in planned]
    print(f"image ResNet (3 stages, width/2w/4w channels, BatchNorm), teacher images {SIZE}x{SIZE}, {CLASSES} classes "
          f"(label-noise floor {_task().floor():.4f}); {STEPS} {OPTIMIZERS[optimizer]} steps of {BATCH}, cosine to 0; "
          f"lrs {lrs[0]:.3g}-{lrs[-1]:.3g} (2^0.5 steps); seeds {SEEDS}\n")
    print_transfer_table(results, VARIANTS, PROXIES, TARGET, "parametrization")
    print(f"\nplot: {plot(results, args.plot or RESULTS / f'{OUTPUTS[optimizer]}.png', optimizer)}")


def _parse(row: dict[str, str]) -> tuple:
    run = row["parametrization"], int(row["width"]), float(row["lr"]), int(row["seed"]), float(row["loss"])
    return run + ((row["optimizer"],) if "optimizer" in row else ())


if __name__ == "__main__":
    main()
