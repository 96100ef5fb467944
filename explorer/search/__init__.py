"""Architecture search on Optuna: the space (space.py), studies (study.py), which storages are accepted and torn
journals (storage.py), one trial (trial.py), worker processes (worker.py), the app's side (control.py). Between
the CLI/UI and the store; never imports streamlit."""
