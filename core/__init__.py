"""ctxbench core."""
