"""A training run's folder: its lock, its resume state (checkpoint.pt) and its history.csv."""
