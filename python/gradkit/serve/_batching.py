"""Micro-batching: requests for one model that arrive together share one predict.

A request's rows join the pending batch; the batch runs when the event loop has
taken in the requests already waiting (max_wait_ms=0: no added latency when the
server is idle, bigger batches under load), after max_wait_ms, or as soon as it
holds max_batch_size rows. Each request gets back exactly the rows it sent, in
order: the batch remembers every request's slice (MLServer 1306 sent one request's
results to another).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(
        self,
        model: Callable[[], Any],
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int, int], None] = lambda rows, requests: None,
    ) -> None:
        if max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0.")
        self._model = model  # called per batch: a reload takes effect at once
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._pending: list[tuple[np.ndarray, bool, asyncio.Future]] = []
        self._rows = 0
        self._timer: asyncio.Handle | None = None

    async def submit(self, X: np.ndarray, want_proba: bool) -> tuple[Any, Any]:
        """(y_pred, proba or None) for the rows of X."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((X, want_proba, future))
        self._rows += len(X)
        if self._rows >= self.max_batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.max_wait_s, self._flush)
                if self.max_wait_s > 0
                else loop.call_soon(self._flush)
            )
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._rows = self._pending, [], 0
        if not batch:
            return
        try:
            X = (
                batch[0][0]
                if len(batch) == 1
                else np.concatenate([b[0] for b in batch])
            )
            model = self._model()
            y_pred = model.predict(X)
            proba = model.predict_proba(X) if any(b[1] for b in batch) else None
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._on_batch(len(X), len(batch))
        start = 0
        for rows, want_proba, future in batch:
            stop = start + len(rows)
            if not future.done():  # a client that went away
                part = proba[start:stop] if want_proba and proba is not None else None
                future.set_result((y_pred[start:stop], part))
            start = stop
