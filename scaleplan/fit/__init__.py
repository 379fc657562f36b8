"""Stage 3, fit: locate optima in a sweep, fit lr/batch power laws and loss laws, write a law file.

Modules: data (read/validate trials), optimum (parabola | argmin | band), power_law (statsmodels on
logs), hyperparameter_law (optima -> lr*/B* laws + bootstrap), loss_law (Huber L-BFGS),
critical_batch (S = S_min(1 + B_crit/B)), law_file, summary, plots, command (`scaleplan fit`).
No torch anywhere here: fitting runs on a machine with only the sweep's numbers.
"""
