"""Training trials: `config` (TrialConfig, TrialResult; no torch), `loop.train_trial` (one model),
`population.train_population` / `population_size_for` (K trials of one width in one batched call)."""
