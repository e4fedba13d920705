"""Chargeback for a shared Azure OpenAI service behind Azure API Management.

The pure core (schema, usage, tokens, pricing, pipeline, rollup, budgets) decides everything; the
edges (writers, dead-letters, readers, exporters) are passed in, so the Azure Function and the local
command line run the same code.
"""

__version__ = "0.1.0"
