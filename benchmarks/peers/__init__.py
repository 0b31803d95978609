"""The peer comparison (``benchmarks/compare.py``): each system's worker app and driver."""
