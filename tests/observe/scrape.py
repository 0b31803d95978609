"""Scraping a /metrics endpoint over HTTP, and reading samples out of it."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: (sample name, sorted label items) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url, follow_redirects=True)
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, labels: Mapping[str, str] | None = None) -> float:
    """One sample's value, 0 when it is absent (a counter never incremented)."""
    return samples.get((name, tuple(sorted((labels or {}).items()))), 0.0)


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of a sample over every label set that has the ``match`` labels."""
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all((k, want) in labels for k, want in match.items())
    )
