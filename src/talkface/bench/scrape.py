"""Reading a server's ``/metrics`` from a benchmark client."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    from prometheus_client.samples import Sample

__all__ = ["metric_samples"]


async def metric_samples(client: httpx.AsyncClient, url: str, key: str) -> list[Sample]:
    """Every sample of the server's ``/metrics`` (raises ``httpx.HTTPError`` when the
    server does not answer it)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return [sample for family in text_string_to_metric_families(response.text)
            for sample in family.samples]
