"""Built-in demo product: a deterministic synthetic inspection data set (see generator)."""
