"""Tasks: one module per task (rating, ranking); the run knows tasks only through `base.Task`."""
