"""lr transfer on a model scaleplan does not ship: a causal convolutional char-LM (nn.Conv1d blocks), muP against SP.

The model is written here as a user would write it: an embedding, DEPTH pre-norm residual blocks of a causal
Conv1d (kernel KERNEL, width -> width) and GELU, a final LayerNorm and a linear readout; roles are inferred by
apply_parametrization from the model at the base width (a conv weight's fan-in is channels x kernel). Adam at a
constant lr, each tensor's lr from `param_groups`, STEPS steps of BATCH x SEQ_LEN characters; held-out loss. The lr
grid (2^0.5 steps) is the same at every width. Proxies: widths 32 and 64 with 3 seeds; target: width 256 (4x the
widest proxy) with 5 seeds. The prediction at the target is the widest proxy's best lr, reused; its regret at
the target is reported raw and smoothed (validate's local model) +- one jackknife s.e. over seeds, with the smoothed
optimum at each width (how far lr* drifts with width).

    python benchmarks/conv_lm_transfer.py [--workers 2]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from itertools import product

import torch
import torch.nn.functional as F
from torch import nn

from charlm_training import held_out_after, parametrized, print_transfer_table
from scaleplan import param_groups
from scaleplan.tasks import get_task
from scaleplan.tasks.charlm import VOCAB

PROXIES, TARGET = (32, 64), 256
SEEDS = {32: 3, 64: 3, 256: 5}
LRS = tuple(1e-3 * 2 ** (k / 2) for k in range(12))  # 0.001 .. 0.045
STEPS, BATCH, SEQ_LEN = 200, 16, 32
DEPTH, KERNEL = 3, 4
VARIANTS = ("mup", "sp")


class ConvLM(nn.Module):
    """Causal convolutional language model: each position sees the DEPTH * (KERNEL - 1) characters before it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(DEPTH))
        self.convs = nn.ModuleList(nn.Conv1d(width, width, KERNEL) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for norm, conv in zip(self.norms, self.convs):
            z = F.pad(norm(h).transpose(1, 2), (KERNEL - 1, 0))  # left padding only: causal
            h = h + F.gelu(conv(z)).transpose(1, 2)
        return self.head(self.norm(h))


def coord_model(width: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """For scaleplan coord-check: the model at `width` and one char-LM batch (the same at every width)."""
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    return ConvLM(width), task.sample_batch(BATCH, torch.Generator().manual_seed(0))


def held_out_loss(job: tuple[str, int, float, int]) -> tuple[str, int, float, int, float]:
    """(parametrization, width, lr, seed) -> the held-out loss after training (inf when the loss went non-finite)."""
    variant, width, lr, seed = job
    torch.set_num_threads(1)
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    torch.manual_seed(seed)
    model = parametrized(ConvLM, variant, width, PROXIES[0])
    opt = torch.optim.Adam(param_groups(model, lr))
    return variant, width, lr, seed, held_out_after(model, opt, task, STEPS, BATCH, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(v, w, lr, s) for v, w in product(VARIANTS, (*PROXIES, TARGET)) for lr in LRS for s in range(SEEDS[w])]
    jobs.sort(key=lambda job: -job[1])  # the widest first, so that the pool ends on short jobs
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(held_out_loss, jobs))
    print(f"causal conv char-LM ({DEPTH} blocks, kernel {KERNEL}), {STEPS} Adam steps of {BATCH} x {SEQ_LEN}; "
          f"lrs {LRS[0]:.3g}-{LRS[-1]:.3g} (2^0.5 steps); seeds {SEEDS}\n")
    print_transfer_table(results, VARIANTS, PROXIES, TARGET, "parametrization")


if __name__ == "__main__":
    main()
