"""The jobs: ingest, replay, the monthly statement and the budget check, built from the core and
the edges they are handed.
"""
