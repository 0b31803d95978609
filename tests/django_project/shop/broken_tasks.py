"""A tasks module that fails while imported (autodiscover_tasks("broken_tasks") only)."""

raise ZeroDivisionError("a bug in a tasks module")
