"""Prometheus metrics in the text exposition format 0.0.4, written by hand: counters and
histograms are a few lines each, not worth a dependency.

Labels hold route templates (`/v1/images/{image_id}`), never concrete paths or anything about a
person, so the number of series stays small and the metrics stay free of personal data.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Counter:
    def __init__(self, name: str, help_: str, labels: Labels = ()) -> None:
        self.name, self.help, self.labelnames = name, help_, labels
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> dict[Labels, float]:
        with self._lock:
            return dict(self._values)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}"


class Histogram:
    def __init__(
        self,
        name: str,
        help_: str,
        labels: Labels = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.name, self.help, self.labelnames = name, help_, labels
        self.buckets = tuple(sorted(buckets))
        # Per label set: a count per bucket (not cumulative), then the sum and the count.
        self._values: dict[Labels, tuple[list[int], float, int]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts, total, n = self._values.get(labels, ([0] * len(self.buckets), 0.0, 0))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            self._values[labels] = (counts, total + value, n + 1)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, (list(c), s, n)) for k, (c, s, n) in self._values.items())
        for labels, (counts, total, n) in items:
            running = 0
            for bound, count in zip(self.buckets, counts, strict=True):
                running += count
                le = _labels(self.labelnames, labels, f'le="{_num(bound)}"')
                yield f"{self.name}_bucket{le} {running}"
            le = _labels(self.labelnames, labels, 'le="+Inf"')
            yield f"{self.name}_bucket{le} {n}"
            yield f"{self.name}_sum{_labels(self.labelnames, labels)} {_num(total)}"
            yield f"{self.name}_count{_labels(self.labelnames, labels)} {n}"


class Gauges:
    """Values read when scraped (gallery size, jobs by status), from a callback."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.read = read

    def render(self) -> Iterable[str]:
        for name, (help_, value) in sorted(self.read().items()):
            yield f"# HELP {name} {help_}"
            yield f"# TYPE {name} gauge"
            yield f"{name} {_num(value)}"


class Metrics:
    """The server's metrics: requests by route and status, their durations, refusals."""

    def __init__(self) -> None:
        self.requests = Counter(
            "vultus_http_requests_total",
            "HTTP requests handled, by method, route template and status.",
            ("method", "route", "status"),
        )
        self.duration = Histogram(
            "vultus_http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ("method", "route"),
        )
        self.gauges: list[Gauges] = []

    def render(self) -> str:
        lines: list[str] = [*self.requests.render(), *self.duration.render()]
        for gauges in self.gauges:
            try:
                lines.extend(gauges.render())
            except Exception:  # a scrape must not fail because the catalog is busy
                continue
        return "\n".join(lines) + "\n"


class RouteTemplates:
    """The route template a request path matched (`/v1/images/{image_id}`), for labels. Read
    from the app's routes on first use, so routes mounted after the middleware count too."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._compiled: list[tuple[set[str], re.Pattern[str], str]] | None = None

    def __call__(self, method: str, path: str) -> str:
        if self._compiled is None:
            compiled = []
            for ctx in iter_route_contexts(self.app.routes):
                template = ctx.path_format or ctx.path
                if template:
                    regex, _, _ = compile_path(template)
                    compiled.append((set(ctx.methods or ()), regex, template))
            self._compiled = compiled
        fallback = None
        for methods, regex, template in self._compiled:
            if regex.match(path):
                if not methods or method in methods:
                    return template
                fallback = fallback or template
        return fallback or "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: streaming responses pass untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = str(scope.get("method", ""))
            template = self.routes(method, str(scope.get("path", "")))
            self.metrics.requests.inc(method, template, str(status))
            self.metrics.duration.observe(time.perf_counter() - started, method, template)
