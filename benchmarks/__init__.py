"""ctxbench benchmarks: the pytest-benchmark micro suite and the driver-vs-wrk calibration."""
