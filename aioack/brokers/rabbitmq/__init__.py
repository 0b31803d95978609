"""The RabbitMQ broker: aio-pika, publisher confirms, quorum queues, channel-safe acks.

See ``broker`` for the layout and docs/rabbitmq.md for the settings and guarantees.
"""

from aioack.brokers.rabbitmq.broker import RabbitMQBroker
from aioack.brokers.rabbitmq.options import RabbitMQOptions

__all__ = ["RabbitMQBroker", "RabbitMQOptions"]
