"""Running plans: directly, or merged with concurrent requests into batches (--enable_batching).

BatchingRunner follows TensorFlow Serving's BatchingSession over a
SharedBatchScheduler queue, one queue per servable, signature, set of outputs
and, unlike there, per dtype and inner shape (every dimension but the first)
of each input, so only requests that can be concatenated share a batch and a
request of the wrong shape fails alone, with the model's own message:

- a request (task) joins the open batch if it fits in `max_batch_size`,
  otherwise the open batch is closed and a new one opened; a task larger
  than `max_batch_size` is refused (INVALID_ARGUMENT, upstream's message), and
  so is a task that would need a batch beyond `max_enqueued_batches`
  (UNAVAILABLE, "queue ... is full", which REST answers with 503);
- when one of `num_batch_threads` is free, a full or closed batch runs at
  once, and the open batch runs once its oldest task has waited
  `batch_timeout_micros` (0: as soon as a thread is free, so batches grow
  only while every thread is busy);
- the inputs are concatenated along the first dimension, padded with copies
  of the first row up to the next of `allowed_batch_sizes` if any, run once,
  and the outputs are split back, so each request gets exactly the rows it
  would have got alone.

A batch of several requests that fails (a corrupt image among good ones, a
value the graph refuses) is split in halves and each half run again, down to
single requests, so the error reaches only the requests that cause it and
the others get their results: a bad request costs at most about twice its
batch's runs, never another request's answer.

A task whose request gives up (deadline, disconnect) before its batch starts
is taken out of the batch. On shutdown, open batches run at once, so requests
in flight finish without waiting for their timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

import numpy as np

from tf_mlp.server.core.inference import Plan
from tf_mlp.server.core.status import Code, ServingError, invalid_argument

# SharedBatchScheduler / BasicBatchScheduler defaults, used for any field the
# batching parameters file leaves out (or when there is no file).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10


@dataclasses.dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple = ()

    @classmethod
    def from_parameters(cls, parameters) -> "BatchingSettings":
        """From a BatchingParameters message (None: all defaults)."""
        settings = cls()
        if parameters is None:
            return settings
        changes = {
            name: getattr(parameters, name).value
            for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
            if parameters.HasField(name)
        }
        changes["allowed_batch_sizes"] = tuple(parameters.allowed_batch_sizes)
        return dataclasses.replace(settings, **changes)


class DirectRunner:
    """Each plan runs alone on the executor."""

    def __init__(self, executor):
        self._executor = executor

    async def run(self, plan: Plan) -> dict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, plan.servable.run, plan.signature, plan.inputs,
                                          plan.output_aliases)

    async def flush(self) -> None:
        pass


@dataclasses.dataclass(eq=False)
class _Task:
    plan: Plan
    size: int
    future: asyncio.Future


class _Batch:
    def __init__(self, opened_at: float):
        self.tasks = []
        self.size = 0
        self.opened_at = opened_at


class _Queue:
    """The batches of one servable signature."""

    def __init__(self, runner: "BatchingRunner"):
        self.runner = runner
        self.open = None
        self.closed = []
        self.timer = None

    def add(self, task: _Task) -> None:
        settings = self.runner.settings
        if task.size > settings.max_batch_size:
            raise invalid_argument(
                f"Task size {task.size} is larger than maximum input batch size {settings.max_batch_size}")
        if self.open is None or self.open.size + task.size > settings.max_batch_size:
            if len(self.closed) + (self.open is not None) >= settings.max_enqueued_batches:
                raise ServingError(Code.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was submitted is full")
            if self.open is not None:
                self.closed.append(self.open)
            self.open = _Batch(self.runner.loop.time())
        self.open.tasks.append(task)
        self.open.size += task.size
        if self.open.size == settings.max_batch_size:
            self.closed.append(self.open)
            self.open = None

    def remove(self, task: _Task) -> None:
        for batch in [self.open, *self.closed]:
            if batch is not None and task in batch.tasks:
                batch.tasks.remove(task)
                batch.size -= task.size

    def next_batch(self, flushing: bool):
        """A batch ready to run now, or None (then arm the timer for the open batch)."""
        while self.closed:
            batch = self.closed.pop(0)
            if batch.tasks:
                return batch
        if self.open is not None and self.open.tasks:
            waited = self.runner.loop.time() - self.open.opened_at
            if flushing or waited * 1e6 >= self.runner.settings.batch_timeout_micros:
                batch, self.open = self.open, None
                return batch
        return None


class BatchingRunner:
    """Merges concurrent plans of the same servable signature into batches; see the module docstring."""

    def __init__(self, executor, settings: BatchingSettings):
        self._executor = executor
        self.settings = settings
        self.loop = None
        self._queues = {}
        self._busy_threads = 0
        self._flushing = False

    async def run(self, plan: Plan) -> dict:
        self.loop = asyncio.get_running_loop()
        size = _task_size(plan)
        # As BatchingSession's TensorSignature, only runs with the same feeds and fetches share a batch; and only
        # those whose inputs np.concatenate can join: the same dtypes and the same sizes past the first dimension.
        key = (id(plan.servable), plan.signature.name, tuple(plan.output_aliases),
               tuple((alias, array.dtype.str, array.shape[1:]) for alias, array in sorted(plan.inputs.items())))
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(self)
        task = _Task(plan, size, self.loop.create_future())
        queue.add(task)
        self._schedule()
        try:
            return await task.future
        except asyncio.CancelledError:
            queue.remove(task)
            raise

    async def flush(self) -> None:
        """Run every open batch now (shutdown)."""
        self._flushing = True
        self._schedule()

    def _schedule(self) -> None:
        for key, queue in list(self._queues.items()):
            while self._busy_threads < self.settings.num_batch_threads:
                batch = queue.next_batch(self._flushing)
                if batch is None:
                    break
                self._busy_threads += 1
                self.loop.create_task(self._run_batch(batch))
            if queue.open is None and not queue.closed:
                del self._queues[key]
            elif queue.open is not None and queue.timer is None and not self._flushing:
                due = queue.open.opened_at + self.settings.batch_timeout_micros / 1e6
                queue.timer = self.loop.call_at(due, self._timer_fired, queue)

    def _timer_fired(self, queue: _Queue) -> None:
        queue.timer = None
        self._schedule()

    async def _run_batch(self, batch: _Batch) -> None:
        tasks = [task for task in batch.tasks if not task.future.done()]
        try:
            if tasks:
                results = await self.loop.run_in_executor(self._executor, _run_isolating_failures, tasks,
                                                          self.settings.allowed_batch_sizes)
                for task, (outputs, error) in zip(tasks, results):
                    if task.future.done():
                        continue
                    if error is None:
                        task.future.set_result(outputs)
                    else:
                        task.future.set_exception(error)
        except Exception as error:  # noqa: BLE001 - e.g. the pool shut down: every waiting request learns it
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)
        finally:
            self._busy_threads -= 1
            self._schedule()


def _run_isolating_failures(tasks: list, allowed_batch_sizes) -> list:
    """(outputs, None) or (None, error) per task: the tasks run as one batch; if that fails and holds more than
    one task, each half is run the same way, so an error stays with the tasks that cause it."""
    plan = tasks[0].plan
    try:
        inputs = _merge(tasks, allowed_batch_sizes)
        outputs = plan.servable.run(plan.signature, inputs, plan.output_aliases)
        return _split(tasks, outputs, batch_size=next(iter(inputs.values())).shape[0])
    except Exception as error:  # noqa: BLE001 - the request(s) in this batch get it, or it is narrowed down
        if len(tasks) == 1:
            return [(None, error)]
        middle = len(tasks) // 2
        return (_run_isolating_failures(tasks[:middle], allowed_batch_sizes)
                + _run_isolating_failures(tasks[middle:], allowed_batch_sizes))


def _task_size(plan: Plan) -> int:
    """The 0th dimension every input shares (BatchingSession's checks and messages)."""
    sizes = set()
    for array in plan.inputs.values():
        if array.ndim == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _merge(tasks, allowed_batch_sizes) -> dict:
    total = sum(task.size for task in tasks)
    target = next((size for size in allowed_batch_sizes if size >= total), total)
    inputs = {}
    for alias in tasks[0].plan.inputs:
        parts = [task.plan.inputs[alias] for task in tasks]
        if target > total:
            parts.append(np.repeat(parts[0][:1], target - total, axis=0))
        inputs[alias] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return inputs


def _split(tasks, outputs: dict, batch_size: int) -> list:
    """(each task's rows of the outputs, None) per task."""
    for alias, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != batch_size:
            raise ServingError(
                Code.INTERNAL,
                f"Batched output tensor {alias}'s 0th dimension does not equal the sum of the 0th dimension "
                "sizes of the input tensors",
            )
    results = []
    offset = 0
    for task in tasks:
        rows = slice(offset, offset + task.size)
        offset += task.size
        results.append(({alias: array[rows] for alias, array in outputs.items()}, None))
    return results
