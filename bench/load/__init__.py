"""End-to-end load benchmark: `python bench/load/run_load.py [--quick]` (see run_load.py)."""
