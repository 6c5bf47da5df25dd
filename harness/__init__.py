"""ctxbench harness."""
