"""aioack: an asyncio-native task queue with acknowledgement done right."""

from aioack.app import App
from aioack.brokers import Broker, DeadLetter, MemoryBroker, broker_from_url
from aioack.canvas import GroupResult, chain, chord, group
from aioack.errors import (
    AioackError,
    AlreadySettled,
    BlockingCallInEventLoop,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    DeliveryError,
    InvalidArguments,
    JoinInsideTask,
    LeaseLost,
    MalformedMessage,
    MessageTooLarge,
    PublishFailed,
    QueueFull,
    Reject,
    ReplayStopped,
    ResultTimeout,
    Retry,
    StaleDelivery,
    TaskFailed,
    TimeLimitExceeded,
    UnknownTask,
)
from aioack.hooks import Hook
from aioack.limits import QueueLimit
from aioack.results import ResultBackend, ResultRecord, State
from aioack.task import AsyncResult, Signature, Task, TaskContext
from aioack.worker import Worker, WorkerSettings

__version__ = "0.1.0"

__all__ = [
    "AioackError",
    "AlreadySettled",
    "App",
    "AsyncResult",
    "BlockingCallInEventLoop",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigurationError",
    "DeadLetter",
    "DeliveryError",
    "GroupResult",
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
    "Signature",
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
    "chain",
    "chord",
    "group",
]
