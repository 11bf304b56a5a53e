"""The order plugins run in: dependencies first (topological), then higher priority, then
the order of the config file."""

from __future__ import annotations

import heapq
from typing import Sequence


class OrderingError(ValueError):
    pass


def plugin_order(names: Sequence[str], depends_on: dict[str, Sequence[str]], priority: dict[str, int]) -> list[str]:
    position = {name: i for i, name in enumerate(names)}
    for name in names:
        for dep in depends_on.get(name, ()):
            if dep not in position:
                raise OrderingError(f"plugin {name!r} depends on {dep!r}, which is not configured")
    waiting = {name: set(depends_on.get(name, ())) for name in names}
    ready = [(-priority.get(n, 0), position[n], n) for n in names if not waiting[n]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, _, name = heapq.heappop(ready)
        order.append(name)
        for other in names:
            if name in waiting[other]:
                waiting[other].discard(name)
                if not waiting[other]:
                    heapq.heappush(ready, (-priority.get(other, 0), position[other], other))
    if len(order) < len(names):
        raise OrderingError("plugins depend on each other in a cycle: " + " -> ".join(_cycle(waiting)))
    return order


def _cycle(waiting: dict[str, set[str]]) -> list[str]:
    start = next(n for n, deps in waiting.items() if deps)
    path, seen = [start], {start}
    node = start
    while True:
        node = sorted(waiting[node])[0]
        if node in seen:
            return path[path.index(node):] + [node]
        path.append(node)
        seen.add(node)
