"""The app's tasks. Nothing imports this module in the worker: autodiscovery does."""

import threading

from django.db import connection

from aioack.integrations.django import app
from tests.django_project.shop.models import Widget

#: The queue the test worker consumes (the on-commit tests count another one).
QUEUE = "shop"
#: No worker consumes it: the on-commit tests count the messages left in it.
COMMITS_QUEUE = "shop-commits"


@app.task(name="shop.add", queue=QUEUE)
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="shop.create_widget", queue=QUEUE)
def create_widget(name: str) -> dict[str, int]:
    """Writes a row through the ORM, from the worker's thread; says which thread."""
    widget = Widget.objects.create(name=name)
    return {"id": widget.id, "thread": threading.get_ident()}


@app.task(name="shop.connection_state", queue=QUEUE)
def connection_state() -> dict[str, int]:
    """Whether this thread's database connection was open when the run started."""
    return {"open": int(connection.connection is not None), "thread": threading.get_ident()}


@app.task(name="shop.widget_created", queue=COMMITS_QUEUE)
def widget_created(widget_id: int) -> None:
    """Published on commit by the view; the tests count it on the broker."""
