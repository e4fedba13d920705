"""The edges: where rows, dead-letters and queries go (DuckDB, Log Analytics, Blob, local folders).

Each edge takes its client, path or endpoint as an argument; none reads settings.
"""
