"""lr transfer on a recurrent model scaleplan does not ship: an LSTM char-LM, muP against SP, and muP without its
recurrent-init rescale.

The model is written here as a user would write it: an embedding of a fixed size EMBED, an nn.LSTM of LAYERS layers
(hidden size = the width, batch_first) and a linear readout; roles are inferred by apply_parametrization from the model
at the base width 32 (and delta 64): the first layer's weight_ih (4 d, EMBED) an input, the weight_hh (and a later
layer's weight_ih) hidden, the biases vectors, the embedding fixed, the readout an output. Variants:

- mup: scaleplan's muP. PyTorch draws every LSTM tensor U(+-1/sqrt(d)); muP wants the fixed-size input weights and the
  biases O(1), so apply_parametrization multiplies them by sqrt(m) (m = d / 32), a rule mup does not have.
- sp: standard parametrization (PyTorch's init, one lr for every tensor).
- mup-no-rescale: muP's rules, but the LSTM's input-role and vector-role tensors (weight_ih_l0 and every bias) are
  copied back to PyTorch's own init after apply_parametrization (that is, multiplied by 1/sqrt(m)): the rescale alone
  is removed, its per-tensor lrs and the readout's multiplier are kept.
- mup-recurrent-lr (exploratory, added after the three above were measured): muP, but the LSTM's hidden-role weights
  (weight_hh, the second layer's weight_ih) train at the base lr, constant in width, instead of muP's lr/m: the
  per-entry lr the three variants' optima shared. Not a rule scaleplan applies.

Adam, each tensor's lr from `param_groups`, STEPS steps of BATCH x SEQ_LEN characters; held-out loss. Three recipes
(--recipe): `constant` (the default; the four variants above) trains at a constant lr without clipping; `usual` (mup
and sp only; benchmarks/results/lstm-lm-recipe-transfer.md, pre-registered) warms the lr up linearly over the first
WARMUP steps, decays it on a cosine toward 0 (one factor on every group's lr, so muP's ratios are kept; the grid's lr is
the peak), and clips the global gradient norm of all parameters to CLIP_NORM before each step; `decay` (exploratory,
added after `usual` was measured) is `usual` without the warmup. Each recipe has its own CSV; the scheduled recipes'
rows record their recipe, and a CSV of another recipe is refused.
The lr grid (2^0.5 steps) is the same at every width; where a variant's best lr at some width is at an edge of the
grid, the grid is extended by one step on that side at every width of that variant (at most MAX_EXTEND times a side).
Proxies: widths 32 and 64 with 3 seeds; target: width 256 (4x the widest proxy) with 5 seeds. The prediction at the
target is the widest proxy's best lr, reused; its regret at the target is reported raw and smoothed (validate's local
model) +- one jackknife s.e. over seeds, with the smoothed optimum at each width (how far lr* drifts with width).

Every run is appended to a CSV (--csv) and skipped when already there, so an interrupted run resumes:

    OMP_NUM_THREADS=1 python benchmarks/lstm_lm_transfer.py [--workers 1] [--recipe usual|decay]

Coordinate check: PYTHONPATH=benchmarks scaleplan coord-check --model lstm_lm_transfer:coord_model ...
"""

from __future__ import annotations

import argparse
import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import torch
from torch import nn

from charlm_training import held_out_after, print_transfer_table, read_runs, record_runs
from scaleplan import apply_parametrization, param_groups
from scaleplan.parametrization.optimizer_check import FACTOR_KEY
from scaleplan.tasks import get_task
from scaleplan.tasks.charlm import VOCAB
from scaleplan.validate.regret import best_point, group_by_lr

PROXIES, TARGET = (32, 64), 256
SEEDS = {32: 3, 64: 3, 256: 5}
GRID = range(17)  # lr = LR0 * 2^(k/2): 0.001 .. 0.256
LR0, MAX_EXTEND = 1e-3, 2
STEPS, BATCH, SEQ_LEN = 200, 16, 32
EMBED, LAYERS = 32, 2
VARIANTS = ("mup", "sp", "mup-no-rescale", "mup-recurrent-lr")
RECIPES = {"constant": VARIANTS, "usual": ("mup", "sp"), "decay": ("mup", "sp")}  # the variants each recipe trains
WARMUP = {"usual": STEPS // 10, "decay": 0}  # the scheduled recipes' warmup steps
CLIP_NORM = 1.0
RESULTS = Path(__file__).parent / "results"
DEFAULT_CSV = {recipe: RESULTS / name for recipe, name in (("constant", "lstm-lm-transfer-trials.csv"),
               ("usual", "lstm-lm-recipe-transfer-trials.csv"), ("decay", "lstm-lm-recipe-decay-trials.csv"))}
FIELDS = ("variant", "width", "lr", "seed", "loss")  # the usual recipe's CSV adds a column "recipe"

Result = tuple[str, int, float, int, float]


class LSTMLM(nn.Module):
    """Character LSTM language model: embedding (fixed size EMBED), LAYERS-layer LSTM of hidden size `width`, readout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.LSTM(EMBED, width, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(tokens))[0])


def lr_at(k: int) -> float:
    """The k-th point of the 2^0.5 lr lattice (the same float at every width, so a proxy's lr is found at the target)."""
    return LR0 * 2 ** (k / 2)


def coord_model(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """For scaleplan coord-check: the model at `width` and one char-LM batch (the same at every width)."""
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    return LSTMLM(width), task.sample_batch(BATCH, torch.Generator().manual_seed(0))


def parametrized(variant: str, width: int) -> LSTMLM:
    """The model at `width` under `variant`, its init drawn from the current torch seed."""
    model = LSTMLM(width)
    rescaled = {name: p for name, p in model.rnn.named_parameters() if name == "weight_ih_l0" or name.startswith("bias")}
    pytorch_init = {name: p.detach().clone() for name, p in rescaled.items()}  # the input and vector roles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_parametrization(model, "sp" if variant == "sp" else "mup", base=LSTMLM(PROXIES[0]), delta=LSTMLM(2 * PROXIES[0]))
    if variant == "mup-no-rescale":
        with torch.no_grad():
            for name, param in rescaled.items():
                param.copy_(pytorch_init[name])
    return model


def lr_factor(step: int, warmup: int) -> float:
    """A scheduled recipe's lr over its peak at step 0 .. STEPS - 1: linear warmup over `warmup` steps, then cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (STEPS - warmup)))


def use_schedule(model: nn.Module, opt: torch.optim.Optimizer, warmup: int) -> None:
    """Before each of `opt`'s steps, set every group's lr to its peak (its lr now) times lr_factor, and clip the
    global gradient norm of all of `model`'s parameters to CLIP_NORM."""
    peaks, steps = [group["lr"] for group in opt.param_groups], iter(range(STEPS))

    def before_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        factor = lr_factor(next(steps), warmup)
        for group, peak in zip(optimizer.param_groups, peaks):
            group["lr"] = peak * factor
        nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)

    opt.register_step_pre_hook(before_step)


def held_out_loss(job: tuple[str, int, float, int], recipe: str = "constant") -> Result:
    """(variant, width, lr, seed) -> the same with the held-out loss after training (inf when it went non-finite)."""
    variant, width, lr, seed = job
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # saturated gates at high lrs made denormal arithmetic 7x slower (same loss)
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    torch.manual_seed(seed)
    model = parametrized(variant, width)
    groups = param_groups(model, lr)
    if variant == "mup-recurrent-lr":
        for group in groups:
            if all(name.startswith(("rnn.weight_hh", "rnn.weight_ih_l1")) for name in group["names"]):
                group["lr"], group[FACTOR_KEY] = lr, 1.0  # the recurrent weights at the base lr at every width
    opt = torch.optim.Adam(groups)
    if recipe != "constant":
        use_schedule(model, opt, WARMUP[recipe])
    return variant, width, lr, seed, held_out_after(model, opt, task, STEPS, BATCH, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="constant")
    parser.add_argument("--csv", type=Path, help="default: the recipe's own CSV in benchmarks/results")
    args = parser.parse_args()
    recipe, variants = args.recipe, RECIPES[args.recipe]
    path = args.csv or DEFAULT_CSV[recipe]
    rows: list[Result] = read_runs(path, partial(_parse, recipe=recipe))
    grids = {v: list(GRID) for v in variants}
    extended = {v: [0, 0] for v in variants}  # steps added below, above
    with ProcessPoolExecutor(args.workers) as pool:
        while True:
            _train(pool, grids, rows, path, recipe)
            added = False
            for v in variants:
                for side in _edges(v, grids[v], rows):
                    if extended[v][side] < MAX_EXTEND:
                        extended[v][side] += 1
                        grids[v].append(min(grids[v]) - 1 if side == 0 else max(grids[v]) + 1)
                        added = True
            if not added:
                break
    schedule = ("" if recipe == "constant" else f" ({f'linear warmup over {WARMUP[recipe]} steps, then ' * bool(WARMUP[recipe])}"
                f"cosine decay to 0; gradient norm clipped to {CLIP_NORM:g})")
    print(f"LSTM char-LM ({LAYERS} layers, embedding {EMBED}, hidden = width), {STEPS} Adam steps of {BATCH} x {SEQ_LEN}"
          f"{schedule}; seeds {SEEDS}; lrs on the 2^0.5 grid: " + "; ".join(
              f"{v} {lr_at(min(grids[v])):.3g}-{lr_at(max(grids[v])):.3g} (extended {extended[v][0]} below, "
              f"{extended[v][1]} above)" for v in variants) + "\n")
    results = [r for r in rows if any(r[2] == lr_at(k) for k in grids[r[0]])]
    print_transfer_table(results, variants, PROXIES, TARGET, "variant")
    print("\ndiverged seed runs: " + "; ".join(
        f"{v} width {w}: {sum(1 for r in results if r[:2] == (v, w) and r[4] == float('inf'))}"
        for v, w in product(variants, (*PROXIES, TARGET))))


def _train(pool: ProcessPoolExecutor, grids: dict[str, list[int]], rows: list[Result], path: Path, recipe: str) -> None:
    """Train every (variant, width, lr, seed) of the grids not in `rows` yet, appending each to `rows` and the CSV
    (the constant recipe's rows as they are, the usual recipe's with the recipe's name appended)."""
    seen = {r[:4] for r in rows}
    jobs = [(v, w, lr_at(k), s) for v, grid in grids.items() for w in (*PROXIES, TARGET) for k in sorted(grid)
            for s in range(SEEDS[w])]
    jobs = sorted((j for j in jobs if j not in seen), key=lambda j: -j[1])  # the widest first: the pool ends on short jobs
    tag = () if recipe == "constant" else (recipe,)
    recorded: list[Any] = []  # rows as written
    results = pool.map(partial(held_out_loss, recipe=recipe), jobs)
    record_runs(path, FIELDS + ("recipe",) * len(tag), (r + tag for r in results), recorded)
    rows.extend(r[:5] for r in recorded)


def _edges(variant: str, grid: list[int], rows: list[Result]) -> set[int]:
    """The sides (0 below, 1 above) of `grid` where the variant's best lr at some width lies on the grid's edge."""
    edges = set()
    for w in (*PROXIES, TARGET):
        best = best_point(group_by_lr([(lr, s, loss) for v, ww, lr, s, loss in rows if (v, ww) == (variant, w)
                                       and any(lr == lr_at(k) for k in grid)])).lr
        edges |= {side for side, k in ((0, min(grid)), (1, max(grid))) if best == lr_at(k)}
    return edges


def _parse(row: dict[str, str], recipe: str) -> Result:
    if row.get("recipe", "constant") != recipe:
        raise SystemExit(f"this CSV holds runs of the {row.get('recipe', 'constant')} recipe, not --recipe {recipe}")
    return row["variant"], int(row["width"]), float(row["lr"]), int(row["seed"]), float(row["loss"])


if __name__ == "__main__":
    main()
