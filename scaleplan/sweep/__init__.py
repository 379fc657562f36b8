"""Sweeps: spec parsing (spec), plan (plan), Optuna storage and study (storage, study), workers
(worker, runner, liveness), objectives (objective, builtin), progress, and export to pandas (export).

Nothing is imported here, so `import scaleplan.sweep.spec` stays light (no torch, no optuna).
"""
