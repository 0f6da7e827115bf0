"""benchbench: reproducible benchmarks of parallel deep-learning training strategies."""

__version__ = "0.1.0"
