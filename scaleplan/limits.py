"""The bounds scaleplan checks input against before any work (one place, documented in the README).

Beyond them a sweep plan exhausts memory, a model cannot be built, or a law's arithmetic overflows;
each bound sits far above anything trained so far, so a value past it is a typo or a unit mix-up.
"""

from __future__ import annotations

# sweeps (spec keys) and coordinate checks
MAX_WIDTH = 65_536                  # [ladder] widths, coord-check --widths
MAX_STEPS = 100_000_000             # [ladder] steps
MAX_DEPTH = 10_000                  # [ladder] depths
MAX_BATCH_SIZE = 1 << 24            # [search] batch_size
MAX_TRIALS_PER_POINT = 10_000       # [sweep] trials_per_point, the values of one searched grid, validate --seeds
MAX_PLANNED_TRIALS = 100_000        # grid points x trials_per_point in one sweep
MAX_LR = 1e4                        # coord-check --lr
MAX_INIT_STD = 1e3                  # coord-check --init-std
MAX_NAME_BYTES = 200               # [sweep] name, validate --name: room for "-SPEC.png" in a file system's 255-byte names
MAX_WORKERS = 256                   # sweep/validate --workers: one process each (~200 MB with torch); more: another machine

# predict: sizes (after parsing 7B, 2T, ...) and shape options
MAX_PARAMS = 1e15
MAX_TOKENS = 1e17                   # also [ladder] tokens
MAX_COMPUTE = 1e32                  # FLOPs
MAX_TARGET_WIDTH = 1 << 20          # predict --width, --d-model
MAX_LAYERS = 100_000
MAX_ASPECT = 10_000.0               # d_model / layers
MAX_SEQ_LEN = 1 << 24
MAX_VOCAB = 100_000_000

# fit (and validate's fits)
MAX_BOOTSTRAP = 10_000              # replicates: beyond this the Monte Carlo error is far below the interval's width

# validate: the target is trained, so its width, depth, steps, tokens and batch size keep the sweep bounds above
MAX_GRID_STEP = 4.0                 # octaves between the target's lrs: coarser cannot bracket an optimum

