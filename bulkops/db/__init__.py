"""Postgres access: pools, migrations and the queries, grouped by table."""
