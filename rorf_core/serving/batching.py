"""A micro-batcher: concurrent routing requests share one scoring call.

Each request puts its prompt on a queue and awaits a future. One collector
task takes the first waiting prompt and gathers more, for up to
``max_wait_s`` or until it has ``max_batch`` prompts. It scores them with
one call in a worker thread, so the event loop keeps serving while the
embedder and the forest run. Embedding many prompts at once costs little
more than one, and a remote embedder gets one API call instead of dozens.

A request waits at most ``timeout_s`` for its score, whatever the embedder
does: past that it fails with :class:`EmbeddingTimeoutError`. A scoring call
that raises fails every request in its batch with :class:`ScoringError`,
except an :class:`~rorf_core.errors.InvalidInputError`, which fails only the
prompt it names while the rest are scored again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rorf_core.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["MicroBatcher", "ScoringError", "EmbeddingTimeoutError", "QueueFullError"]

ScoreBatch = Callable[[list[str]], np.ndarray]


class ScoringError(RuntimeError):
    """The scoring call for a batch raised; ``__cause__`` is its error."""


class EmbeddingTimeoutError(TimeoutError):
    """A prompt was not scored within the batcher's time budget."""


class QueueFullError(RuntimeError):
    """Too many prompts are waiting for a score, usually behind a stuck embedder."""


_Item = tuple[str, "asyncio.Future[float]"]


class MicroBatcher:
    """Score prompts in batches with ``score_batch`` on a worker thread.

    :param score_batch: returns one score per prompt, in order, for example
        ``router.win_rate``.
    :param max_batch: the most prompts per scoring call.
    :param max_wait_s: how long the first prompt of a batch waits for others.
    :param timeout_s: the most seconds a request waits for its score.
    :param max_queue: the most prompts that may wait; more are rejected with
        :class:`QueueFullError` so a stuck embedder cannot pile up requests.
    """

    def __init__(
        self,
        score_batch: ScoreBatch,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.001,
        timeout_s: float = 10.0,
        max_queue: int = 4096,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be at least 0, got {max_wait_s}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.score_batch = score_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.batches = 0
        self.prompts = 0
        self._queue: asyncio.Queue[_Item] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._collector is not None:
            return
        self._queue = asyncio.Queue()
        # One worker: embedders are not promised to be thread-safe, and a
        # batch that waits behind another is still cheaper than two calls.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rorf-scoring")
        self._collector = asyncio.create_task(self._collect(), name="rorf-batcher")

    async def stop(self) -> None:
        """Stop the collector and fail the prompts still waiting."""
        if self._collector is None:
            return
        self._collector.cancel()
        try:
            await self._collector
        except asyncio.CancelledError:
            pass
        assert self._queue is not None and self._executor is not None
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ScoringError("the server is shutting down"))
        # A scoring call that hangs cannot be interrupted, so do not wait for it.
        # NOTE: the interpreter still joins this worker thread at exit, so a
        # hung embedder delays the process's exit until the call returns.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._collector = None

    async def score(self, prompt: str) -> float:
        """Return the score of ``prompt``, computed in a batch with others.

        :raises EmbeddingTimeoutError: no score within ``timeout_s``.
        :raises ScoringError: the scoring call raised.
        :raises InvalidInputError: the embedder rejected this prompt.
        :raises QueueFullError: ``max_queue`` prompts are already waiting.
        """
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        if self._queue.qsize() >= self.max_queue:
            raise QueueFullError(
                f"{self._queue.qsize()} prompts are already waiting to be scored"
            )
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((prompt, future))
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise EmbeddingTimeoutError(
                f"the prompt was not scored within {self.timeout_s:g} s"
            ) from None

    async def _collect(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._next_batch()
            # Requests that timed out or were cancelled while queued are dropped.
            live = [(prompt, future) for prompt, future in batch if not future.done()]
            if live:
                await self._run(live)

    async def _next_batch(self) -> list[_Item]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        prompts = [prompt for prompt, _ in batch]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            scores = await loop.run_in_executor(self._executor, self._score, prompts)
        except InvalidInputError as error:
            await self._retry_without(batch, error)
            return
        except Exception as error:  # noqa: BLE001 - any embedder failure fails the batch
            logger.warning(
                "scoring a batch of %d prompts failed: %s: %s",
                len(prompts),
                type(error).__name__,
                error,
            )
            failure = ScoringError(f"{type(error).__name__}: {error}")
            failure.__cause__ = error
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        logger.debug(
            "scored a batch of %d prompts in %.2f ms",
            len(prompts),
            (time.perf_counter() - started) * 1000,
        )
        for (_, future), value in zip(batch, scores, strict=True):
            if not future.done():
                future.set_result(float(value))

    def _score(self, prompts: Sequence[str]) -> np.ndarray:
        self.batches += 1
        self.prompts += len(prompts)
        scores = np.asarray(self.score_batch(list(prompts)), dtype=np.float64)
        if scores.shape != (len(prompts),):
            raise ScoringError(
                f"score_batch returned shape {scores.shape} for {len(prompts)} prompts"
            )
        return scores

    async def _retry_without(
        self, batch: list[_Item], error: InvalidInputError
    ) -> None:
        # The embedder named one bad prompt; only its request fails.
        index = error.index if 0 <= error.index < len(batch) else None
        if index is None or len(batch) == 1:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        _, bad_future = batch[index]
        if not bad_future.done():
            bad_future.set_exception(InvalidInputError(0, error.reason))
        rest = batch[:index] + batch[index + 1 :]
        await self._run(rest)
