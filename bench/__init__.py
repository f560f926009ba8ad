"""Benchmarks: each script measures one workload against its raw-SQL baseline."""
