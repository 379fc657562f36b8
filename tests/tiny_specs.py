"""Tiny built-in specs that several test modules train."""

# an MLP under muP, AdamW over (lr, lambda): seconds on a CPU
WEIGHT_DECAY_MLP = """
[sweep]
name = "wd-tiny"
sampler = "grid"
seeds = [0]
[task]
name = "teacher-student"
kwargs = {in_dim = 8, out_dim = 2, teacher_width = 16, n_eval = 128}
[model]
name = "mlp"
parametrization = "mup"
base_width = 2
[train]
optimizer = "adamw"
schedule = "cosine"
[ladder]
widths = [2, 4]
steps = [3, 6]
[search]
lr = [3e-3, 1e-2, 3e-2]
wd_tau = [0.4, 1.0, 2.5]
batch_size = [16]
"""

# an MLP under muP on a two-lr grid of 3 steps: the smallest built-in sweep (its empty [train] table is there to extend)
MLP_GRID = """
[sweep]
name = "mlp"
sampler = "grid"
seeds = [0]
[task]
name = "teacher-student"
kwargs = {in_dim = 8, out_dim = 2, teacher_width = 16, n_eval = 128}
[model]
name = "mlp"
parametrization = "mup"
base_width = 2
[train]
[ladder]
widths = [2, 4]
steps = [3]
[search]
lr = [1e-3, 1e-2]
batch_size = [16]
"""
