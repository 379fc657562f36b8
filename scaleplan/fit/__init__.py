"""Stage 3, fit: locate optima in a sweep, fit lr/batch power laws, loss laws and isoFLOP laws, write a law file.

Modules: data (read/validate trials), optimum (parabola | argmin | band), power_law (statsmodels on
logs, bootstrap over cells), hyperparameter_law (optima -> lr*/B* laws + bootstrap), power_sum
(E + sum A_i/x_i^alpha_i by Huber from a dense profiled start grid), loss_law (L(N, D) on power_sum),
isoflop (N*(C), D*(C): Chinchilla approaches 1 and 2), critical_batch (S = S_min(1 + B_crit/B)),
flags (what a fit found doubtful), law_file, summary, plots, pipeline (sweep -> law file, shared with
validate), command (`scaleplan fit`).
No torch anywhere here: fitting runs on a machine with only the sweep's numbers.
"""
