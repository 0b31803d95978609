"""Operating aioack: what a worker shows to the outside while it runs.

Each module is one observer, built on the public hooks (``aioack.hooks``)
or on the broker's inspection interface (``BrokerAdmin``): metrics, logs,
health probes, tracing. None of them can change how a delivery is settled.
"""
