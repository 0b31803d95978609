"""A worker refuses to start when a task option needs what its result backend lacks."""

from __future__ import annotations

from aioack.errors import ConfigurationError
from aioack.results.base import ResultBackend


def require_backend_method(
    backend: ResultBackend | None, tasks: list[str], option: str, method: str, keeps: str
) -> None:
    """Raises ConfigurationError naming ``tasks`` when ``backend`` does not implement
    ``method`` (it keeps no ``keeps``), or there is no backend at all."""
    if not tasks:
        return
    implemented = backend is not None and getattr(type(backend), method) is not getattr(
        ResultBackend, method
    )
    if implemented:
        return
    where = "no result backend" if backend is None else type(backend).__name__
    raise ConfigurationError(
        f"{option} on tasks {', '.join(tasks)} needs a result backend that keeps {keeps}, "
        f"and the worker has {where}: use App(results='redis://...') or "
        "App(results='sqlite://')"
    )
