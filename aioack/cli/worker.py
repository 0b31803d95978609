"""``python -m aioack worker MODULE:APP``: run a worker until a signal (or --burst)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from aioack.app import ENV_BROKER_URL, ENV_RESULTS_URL, App
from aioack.brokers import MemoryBroker
from aioack.cli.codes import ExitCode
from aioack.cli.gcfreeze import FreezeAfterStart
from aioack.cli.loading import load_app, load_hook, load_redactor
from aioack.cli.scheduling import add_lease_argument, embedded
from aioack.errors import ConfigurationError
from aioack.observe.health import HealthProbe
from aioack.worker import CLOSE_ALLOWANCE_S
from aioack.worker.settings import MAX_CONCURRENCY, MAX_PREFETCH

if TYPE_CHECKING:  # imported when --metrics-port asks: prometheus-client is an extra
    from aioack.observe.metrics import PrometheusMetrics

EXAMPLES = """\
  python -m aioack worker myproj.tasks:app
  python -m aioack worker myproj.tasks:app -Q default,emails -c 100 --prefetch 200
  python -m aioack worker myproj.tasks:app --broker redis://127.0.0.1:6379/0 --burst
  python -m aioack worker myproj.tasks:app --hook myproj.metrics:TimingHook
  python -m aioack worker myproj.tasks:app --metrics-port 9100 --metrics-host 0.0.0.0
  AIOACK_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ python -m aioack worker myproj.tasks:app
"""


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a worker for an App",
        epilog="examples:\n" + EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("app", help="the App to run, as module.path:attribute")
    worker.add_argument(
        "-Q", "--queues", help="comma-separated queues (default: the tasks' queues)"
    )
    worker.add_argument(
        "-c",
        "--concurrency",
        type=whole_number(1, MAX_CONCURRENCY),
        default=10,
        metavar="N",
        help="tasks run at once (10)",
    )
    worker.add_argument(
        "--prefetch",
        type=whole_number(1, MAX_PREFETCH),
        metavar="N",
        help="deliveries held at once (2 x concurrency)",
    )
    worker.add_argument("--burst", action="store_true", help="exit 0 when the queues are empty")
    add_broker_arguments(worker)
    worker.add_argument(
        "--shutdown-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="seconds running tasks get to finish on SIGTERM (30)",
    )
    worker.add_argument(
        "--hook",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a hook (see docs/hooks.md): an object, or a class made with no arguments; repeatable",
    )
    worker.add_argument(
        "--log-values",
        metavar="MODULE:ATTR",
        help="a redactor (task, 'arguments' or 'result', value) -> what to log, or None: "
        "without it, no task argument or return value is ever logged",
    )
    worker.add_argument(
        "--health-port",
        type=port_number,
        metavar="PORT",
        help="serve /livez and /readyz for orchestrator probes on this port (docs/operations.md)",
    )
    worker.add_argument(
        "--health-host",
        help="address the health server listens on (127.0.0.1; 0.0.0.0 in a Kubernetes pod)",
    )
    add_metrics_arguments(worker)
    worker.add_argument(
        "--scheduler",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also fire the App's periodic tasks (on when the App declares any; each tick "
        "fires once however many workers run it: docs/periodic.md)",
    )
    add_lease_argument(worker)
    worker.set_defaults(run=run)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs aioack[prometheus])",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="address to serve metrics on (127.0.0.1)",
    )


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``; anything else is a
    usage error (exit 2) naming the option, e.g. ``argument -c/--concurrency: 0 is
    out of range: give a whole number from 1 to 100000``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number: give one from {low} to {high}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{value} is out of range: give a whole number from {low} to {high}"
            )
        return value

    return parse


port_number = whole_number(0, 65535)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: give a finite number, 0 or more")
    return value


def add_broker_arguments(parser: argparse.ArgumentParser, *, results: bool = True) -> None:
    parser.add_argument(
        "--broker",
        help=f"broker URL (default: the app's, else ${ENV_BROKER_URL}, else sqlite://: "
        "the file aioack.db here)",
    )
    if not results:
        return
    parser.add_argument(
        "--results",
        help=f"result backend URL (default: the app's, else ${ENV_RESULTS_URL}, else none)",
    )


def app_for(args: argparse.Namespace) -> App:
    """The App the command line names, on the broker and results it names.

    --broker / --results win; otherwise the App already followed the one rule
    (its code's own choice, else AIOACK_BROKER_URL / AIOACK_RESULTS_URL, else
    the SQLite default file).
    """
    app = load_app(args.app)
    if args.broker:
        app.use_broker(args.broker)
    if getattr(args, "results", None):  # commands without --results have none
        app.use_results(args.results)
    return app


def run(args: argparse.Namespace) -> int:
    app = app_for(args)
    return asyncio.run(_run(app, args))


async def _run(app: App, args: argparse.Namespace) -> int:
    if isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            "memory:// lives inside one process: a worker started from the command line "
            "can never receive what another process enqueues. Use the default sqlite:// "
            "(a file, no server), or redis:// / amqp://"
        )
    _check_hosts(args)

    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    _warn_unused_queues(queues, app, args.app)
    hooks = [load_hook(spec) for spec in args.hook]
    probe = HealthProbe() if args.health_port is not None else None
    metrics = new_metrics(app) if args.metrics_port is not None else None
    worker = app.worker(
        queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        shutdown_timeout=args.shutdown_timeout,
        hooks=[*hooks, *(h for h in (probe, metrics) if h is not None), FreezeAfterStart()],
        log_values=load_redactor(args.log_values) if args.log_values else None,
    )
    if probe is not None:
        try:
            await probe.start(args.health_host, args.health_port)
        except OSError as exc:
            raise ConfigurationError(
                f"--health-port {args.health_port}: cannot listen on "
                f"{args.health_host}:{args.health_port} ({exc})"
            ) from exc
    try:
        async with served(metrics, args, app, worker.settings.queues), embedded(app, args):
            await worker.run(burst=args.burst, install_signal_handlers=True)
    finally:
        if probe is not None:
            await probe.stop()
        await close(app)
    if worker.forced:
        return ExitCode.FORCED_STOP
    return ExitCode.SHUTDOWN_TIMEOUT if worker.timed_out else ExitCode.OK


def _warn_unused_queues(queues: list[str] | None, app: App, spec: str) -> None:
    """A -Q queue no task of the App names is often a typo; it is still consumed
    (``apply_async(queue=...)`` may send there), so this warns, never refuses."""
    used = app.queues()
    for queue in queues or ():
        if queue in used:
            continue
        close = difflib.get_close_matches(queue, used, n=1)
        logging.getLogger("aioack.cli").warning(
            "-Q %s: no task of %s uses this queue; the worker runs only what "
            "apply_async(queue=%r) sends there (%s)",
            queue,
            spec,
            queue,
            f"did you mean {close[0]}?" if close else f"the tasks' queues: {', '.join(used)}",
        )


def _check_hosts(args: argparse.Namespace) -> None:
    """A host without its port would be ignored: say so rather than serve nothing."""
    for what in ("health", "metrics"):
        host, port = getattr(args, f"{what}_host"), getattr(args, f"{what}_port")
        if host is not None and port is None:
            raise ConfigurationError(f"--{what}-host {host} needs --{what}-port PORT as well")
        if host is None:
            setattr(args, f"{what}_host", "127.0.0.1")


def new_metrics(app: App) -> PrometheusMetrics:
    try:
        from aioack.observe.metrics import PrometheusMetrics
    except ImportError as exc:  # the extra is not installed
        raise ConfigurationError(
            f"--metrics-port needs prometheus-client: pip install 'aioack[prometheus]' ({exc})"
        ) from exc
    return PrometheusMetrics(task_names=app.tasks)  # a task label is a registered name


@contextlib.asynccontextmanager
async def served(
    metrics: PrometheusMetrics | None, args: argparse.Namespace, app: App, queues: Sequence[str]
) -> AsyncIterator[None]:
    """Serve /metrics for the worker's lifetime (queue depths need the broker connected)."""
    if metrics is None:
        yield
        return
    await app.connect()
    async with metrics.serve(
        args.metrics_port, args.metrics_host, broker=app.broker, queues=queues
    ):
        yield


async def close(app: App) -> None:
    """Close the connections, but never let a dead broker hold the exit."""
    try:
        async with asyncio.timeout(CLOSE_ALLOWANCE_S):
            await app.aclose()
    except TimeoutError:
        logging.getLogger("aioack.cli").warning(
            "closing the broker connections took over %.1fs; exiting anyway", CLOSE_ALLOWANCE_S
        )
