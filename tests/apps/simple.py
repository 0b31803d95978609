"""A small App for CLI tests (embedded broker unless --broker says otherwise)."""

from aioack import App

app = App()


@app.task(queue="simple")
async def noop() -> None:
    return None


not_an_app = object()
