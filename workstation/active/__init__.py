"""Active learning: which unreviewed image the inspector should see next, and why."""
