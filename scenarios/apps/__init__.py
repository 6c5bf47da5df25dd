"""Test-only probe apps for the live scenarios.

Servers load them as ``scenarios.apps.<module>:<attr>``; the scenario fixtures put the
repository root on the servers' ``PYTHONPATH``.
"""
