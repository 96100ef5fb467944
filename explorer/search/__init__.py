"""Architecture search on Optuna: the space (space.py), studies and storage (study.py), one trial (trial.py),
worker processes (worker.py). Between the CLI/UI and the store; never imports streamlit."""
