"""Soniq's Django-free core: job specs, the registry, settings, errors and the JSON codec.

No I/O happens here and nothing here imports Django or psycopg.
"""
