"""The shape of the package: no import cycle, and the public surface pinned.

The layer contract itself (nothing imports upward) is import-linter's, in
pyproject.toml, run by .ci/run.
"""

from __future__ import annotations

import grimp

import aioack


def test_no_module_of_aioack_imports_itself_through_others() -> None:
    graph = grimp.build_graph("aioack", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    # A package's __init__ importing its own submodules is how Python packages
    # export; it is not a cycle unless a submodule imports the package back.
    assert cycles == [], "\n".join(cycles)


def test_the_public_surface_is_pinned() -> None:
    # A change here is a change of the public API: make it on purpose.
    assert sorted(aioack.__all__) == sorted(
        [
            "AioackError",
            "AlreadySettled",
            "App",
            "AsyncResult",
            "GroupResult",
            "Signature",
            "chain",
            "chord",
            "group",
            "BlockingCallInEventLoop",
            "Broker",
            "BrokerError",
            "BrokerUnavailable",
            "ConfigurationError",
            "DeadLetter",
            "DeliveryError",
            "Hook",
            "InvalidArguments",
            "JoinInsideTask",
            "LeaseLost",
            "MalformedMessage",
            "MemoryBroker",
            "MessageTooLarge",
            "PublishFailed",
            "QueueFull",
            "QueueLimit",
            "Reject",
            "ReplayStopped",
            "ResultBackend",
            "ResultRecord",
            "ResultTimeout",
            "Retry",
            "StaleDelivery",
            "State",
            "Task",
            "TaskContext",
            "TaskFailed",
            "TimeLimitExceeded",
            "UnknownTask",
            "Worker",
            "WorkerSettings",
            "broker_from_url",
        ]
    )
    for name in aioack.__all__:
        assert getattr(aioack, name) is not None
