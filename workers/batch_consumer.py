"""Batch queues on channels of their own, each with a small prefetch window.

Celery gives a worker one prefetch window for all the queues it consumes:
``worker_concurrency`` messages (prefetch multiplier 1). Batch lines and
ingestion jobs are acknowledged late, so each holds its place in that window
until it ends. Were a model's batch queue in the same window as its
interactive queue, a long batch backlog would fill every place, and an
interactive request would not even be received until some batch line
finished; another worker for the same model would find the backlog already
reserved by the first.

So ``hearth worker`` leaves the batch queues out of Celery's ``--queues``
and this consumer step reads each model's batch queue on a channel of its
own with a prefetch of ``HEARTH_WORKER_BATCH_PREFETCH``. The main window
stays whole for maintenance and interactive messages, and a worker holds at
most that many unacknowledged messages of each batch queue, whatever the
backlog. Messages go through Celery's own task handler into the same
thread pool, where batch work so takes at most that many threads per model,
and still shares the model's batch with interactive requests.
"""

from __future__ import annotations

from celery import Celery, bootsteps
from kombu.common import ignore_errors


class _BatchQueues(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer:Tasks",)
    queues: tuple[str, ...] = ()
    prefetch: int = 1

    def __init__(self, c, **kwargs) -> None:
        self.consumers: list = []
        super().__init__(c, **kwargs)

    def start(self, c) -> None:
        # After Tasks: Celery's strategies for our tasks are in place. After a
        # lost connection the old consumers went with it; start afresh.
        self.consumers = []
        handler = c.create_task_handler()
        for name in self.queues:
            consumer = c.app.amqp.TaskConsumer(
                c.connection.channel(),
                queues=[c.app.amqp.queues[name]],
                on_message=handler,
                # Set on the channel before consuming, per consumer (RabbitMQ
                # refuses global QoS on quorum queues; Redis counts per
                # channel either way).
                prefetch_count=self.prefetch,
            )
            consumer.consume()
            self.consumers.append(consumer)

    def stop(self, c) -> None:
        # As Celery's own task consumer: stop receiving, but keep the channel
        # open so that tasks still running can acknowledge their messages.
        for consumer in self.consumers:
            ignore_errors(c.connection, consumer.cancel)

    def shutdown(self, c) -> None:
        self.stop(c)
        for consumer in self.consumers:
            ignore_errors(c.connection, consumer.channel.close)
        self.consumers = []


def consume_batch_queues(app: Celery, *, queues: list[str], prefetch: int) -> None:
    """Make this process's worker read ``queues`` with their own prefetch."""
    step = type(
        "BatchQueues",
        (_BatchQueues,),
        {"queues": tuple(queues), "prefetch": prefetch, "__module__": __name__},
    )
    app.steps["consumer"].add(step)
