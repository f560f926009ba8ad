"""How big each workload is: the full plan of BENCHMARKS.md and the quick smoke plan."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one `python -m bench.run`."""

    name: str
    products: int
    # Runs of each ours/baseline pair (W1-W5); the figure is their median.
    runs: int
    # W4: uploaded rows, of which this many carry a typo and need the fuzzy rule.
    match_rows: int
    fuzzy_rows: int
    match_runs: int
    # W6: sequential requests at 1 client; requests per client at 32 clients.
    inline_requests: int
    inline_clients: int
    inline_requests_per_client: int
    # W7: small background jobs run one after another (pickup latency).
    pickup_jobs: int
    # W8: websocket subscribers of one job, spread over this many client processes.
    subscribers: int
    subscriber_processes: int
    # W9: small jobs of `job_items` products each, from `tenants` tenants; the runs of
    # accepting them, draining them and the baseline; then `load_seconds` of submissions at
    # each of `load_levels` (fractions of the drain rate).
    small_jobs: int
    job_items: int
    tenants: int
    tenant_products: int
    small_job_runs: int
    load_seconds: float
    load_levels: tuple[float, ...]
    # W10: worker processes, and runs per point of the curve.
    worker_counts: tuple[int, ...]
    scaling_runs: int
    # W10 also with W1's products split into four jobs sent at once.
    scaling_split: bool
    # R1: new products imported from one file and exported back.
    roundtrip_rows: int
    # E1: products enriched; E2: tenant A's and tenant B's products; E3: images fetched.
    enrich_items: int
    tenant_a_items: int
    tenant_b_items: int
    images: int

    @property
    def share(self) -> int:
        """Products a bulk workload changes: a tenth of the catalog (100,000 of 1,000,000)."""
        return self.products // 10


FULL = Plan(
    name="full",
    products=1_000_000,
    runs=3,
    match_rows=100_000,
    fuzzy_rows=50,
    match_runs=2,
    inline_requests=300,
    inline_clients=32,
    inline_requests_per_client=20,
    pickup_jobs=50,
    subscribers=1000,
    subscriber_processes=2,
    small_jobs=10_000,
    job_items=50,
    tenants=20,
    tenant_products=1000,
    small_job_runs=3,
    load_seconds=30.0,
    load_levels=(0.5, 0.8, 1.0),
    worker_counts=(1, 2, 4),
    scaling_runs=1,
    scaling_split=True,
    roundtrip_rows=1_000_000,
    enrich_items=2000,
    tenant_a_items=20_000,
    tenant_b_items=200,
    images=5000,
)

QUICK = Plan(
    name="quick",
    products=5000,
    runs=1,
    match_rows=500,
    fuzzy_rows=5,
    match_runs=1,
    inline_requests=30,
    inline_clients=32,
    inline_requests_per_client=1,
    pickup_jobs=5,
    subscribers=50,
    subscriber_processes=1,
    small_jobs=200,
    job_items=50,
    tenants=20,
    tenant_products=100,
    small_job_runs=1,
    load_seconds=1.0,
    load_levels=(0.5, 1.0),
    # Two points make the curve (and run W10 with several workers); a third would only
    # add one more start of the stack to the smoke run.
    worker_counts=(1, 2),
    scaling_runs=1,
    scaling_split=False,
    roundtrip_rows=2000,
    enrich_items=100,
    tenant_a_items=1000,
    tenant_b_items=20,
    images=200,
)
