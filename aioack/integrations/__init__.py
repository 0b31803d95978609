"""Integrations with web frameworks. Each needs its extra (``pip install 'aioack[fastapi]'``)."""
