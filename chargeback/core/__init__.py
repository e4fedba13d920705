"""The pure core: event contract, usage resolution, token counting, pricing and the usage row.

No I/O and no settings: everything it needs is passed in.
"""
