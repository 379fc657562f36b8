#!/usr/bin/env bash
# HF GPT-2 (transformers, from a config: 2 blocks, 1 head, PyTorch fan-in init, zero readout and query),
# coordinate check under muP and SP: widths 64-512, 3 Adam steps, lr 3e-3, 5 seeds. Writes the PNGs and
# the tables (mup.txt, sp.txt) next to this script. Run from the repository root.
set -euo pipefail
out=benchmarks/results/hf-gpt2-coord-check
for p in mup sp; do
    scaleplan coord-check --model scaleplan.models.hf:coord_check_gpt2 --parametrization "$p" \
        --widths 64,128,256,512 --steps 3 --lr 0.003 --seeds 5 --out "$out" > "$out/$p.txt"
done
