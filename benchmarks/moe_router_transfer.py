"""Does the MoE router's role change lr transfer? transformers' Mixtral under muP on the char-LM, router a readout
(what apply_parametrization infers since it reads routers) against router an input (what it inferred before:
constant init, no 1/m multiplier), declared with `roles=`; everything else identical.

Mixtral (2 layers, 4 experts, top-2, 4 heads of width/4, 2 key-value heads, FFN 2x width, untied, HF's
N(0, 0.02) init at every width via init_std) trains for STEPS Adam steps (constant lr, each tensor's lr from
`param_groups`) on batches of 16 x 32 characters; the held-out loss is the char-LM's. The lr grid (2^0.5
steps) is the same at every width. Proxies: widths 32 and 64 with 3 seeds; target: width 256 (4x the widest
proxy) with 5 seeds. muP's prediction at the target is the widest proxy's best lr, reused; its regret at the
target is reported raw and smoothed (validate's local model) +- one jackknife s.e. over seeds, with the smoothed
optimum at each width (how far lr* drifts with width).

    python benchmarks/moe_router_transfer.py [--workers 2]
"""

from __future__ import annotations

import argparse
import warnings
from concurrent.futures import ProcessPoolExecutor
from itertools import product

import torch
import transformers

from charlm_training import held_out_after, print_transfer_table
from scaleplan import apply_parametrization, param_groups
from scaleplan.tasks import get_task
from scaleplan.tasks.charlm import VOCAB

PROXIES, TARGET = (32, 64), 256
SEEDS = {32: 3, 64: 3, 256: 5}
LRS = tuple(2e-3 * 2 ** (k / 2) for k in range(9))  # 0.002 .. 0.032
STEPS, BATCH, SEQ_LEN = 200, 16, 32
VARIANTS = ("router a readout", "router an input (before)")


def mixtral(width: int) -> torch.nn.Module:
    return transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=SEQ_LEN,
        tie_word_embeddings=False, attn_implementation="eager"))


def held_out_loss(job: tuple[str, int, float, int]) -> tuple[str, int, float, int, float]:
    """(variant, width, lr, seed) -> the held-out loss after training (inf when the loss went non-finite)."""
    variant, width, lr, seed = job
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    task = get_task("charlm", seq_len=SEQ_LEN, n_eval=128)
    torch.manual_seed(seed)
    model = mixtral(width)
    roles = {f"model.layers.{i}.mlp.gate.weight": "input" for i in range(2)} if variant == VARIANTS[1] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_parametrization(model, "mup", base=mixtral(PROXIES[0]), delta=mixtral(2 * PROXIES[0]), init_std=0.02, roles=roles)
    opt = torch.optim.Adam(param_groups(model, lr))
    return variant, width, lr, seed, held_out_after(lambda x: model(input_ids=x).logits, opt, task, STEPS, BATCH, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(v, w, lr, s) for v, w in product(VARIANTS, (*PROXIES, TARGET)) for lr in LRS for s in range(SEEDS[w])]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(held_out_loss, jobs))
    print(f"Mixtral under muP on the char-LM, {STEPS} steps of {BATCH} x {SEQ_LEN}; lrs {LRS[0]:.3g}-{LRS[-1]:.3g} (2^0.5 steps)\n")
    print_transfer_table(results, VARIANTS, PROXIES, TARGET, "router")


if __name__ == "__main__":
    main()
