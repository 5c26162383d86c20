"""imgexp's Optuna sweeper for Hydra: `hydra/sweeper=optuna` on current Optuna, with pruning
through the study's storage and resumable studies (see README, "Sweeps and comparison")."""
