"""Per-call cost of argument checking: to_wire (call site) and from_wire (worker).

    python benchmarks/bench_arguments.py [BASE_COMMIT]

Times the current aioack/signature.py and, given a commit, that commit's
version in the same run, and prints the ratio. No broker: pure CPU, per call.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Order(BaseModel):
    sku: str
    quantity: int


def two_ints(x: int, y: int) -> int:
    return x + y


def mixed(order: Order, when: dt.datetime, tags: list[str], note: str = "") -> None: ...


CASES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "add(int, int)": (two_ints, (2, 2)),
    "order(model, datetime, list)": (
        mixed,
        (Order(sku="a", quantity=2), dt.datetime(2026, 1, 2, tzinfo=dt.UTC), ["a", "b"]),
    ),
}


def load(source: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call_us(
    signature_module: ModuleType, fn: Any, args: tuple[Any, ...]
) -> tuple[float, float]:
    sig = signature_module.TaskSignature(fn, type(None))
    wire = sig.to_wire(args, {})
    to = min(timeit.repeat(lambda: sig.to_wire(args, {}), number=5000, repeat=5)) / 5000
    back = min(timeit.repeat(lambda: sig.from_wire(*wire, None), number=5000, repeat=5)) / 5000
    return to * 1e6, back * 1e6


def main() -> None:
    modules = {"now": load(ROOT / "aioack" / "signature.py", "signature_now")}
    if len(sys.argv) > 1:
        text = subprocess.run(
            ["git", "show", f"{sys.argv[1]}:aioack/signature.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old = Path(tempfile.mkdtemp()) / "signature_base.py"
        old.write_text(text)
        modules["base"] = load(old, "signature_base")
    for case, (fn, args) in CASES.items():
        timings = {label: per_call_us(m, fn, args) for label, m in modules.items()}
        for label, (to, back) in timings.items():
            print(f"{case:30} {label:5} to_wire {to:6.2f} us   from_wire {back:6.2f} us")
        if "base" in timings:
            (to_now, back_now), (to_base, back_base) = timings["now"], timings["base"]
            ratios = f"to_wire x{to_now / to_base:.2f}   from_wire x{back_now / back_base:.2f}"
            print(f"{case:30} ratio {ratios}")


if __name__ == "__main__":
    main()
