"""Put on PYTHONPATH while a test not marked slow runs (tests/conftest.py): every child Python of
the test records the ranks, Snakemake or browser it starts (tests/helpers/launches.py)."""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_benchbench_launches", Path(__file__).parents[1] / "launches.py")
_launches = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_launches)
sys.addaudithook(_launches.record_launch)
