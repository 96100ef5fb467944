"""What a run leaves on disk: events and their fold, run folders, checkpoints, the process runner."""
