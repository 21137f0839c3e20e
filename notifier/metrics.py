"""Prometheus metrics, in a registry owned by the app (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from notifier.constants import METRICS_COUNTS_TTL

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 300, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Gauge(
            "notifier_deliveries",
            "Ledger rows by state and channel (counted at most every few seconds).",
            ["state", "channel"],
            registry=r,
        )
        self.send_attempts = Counter(
            "notifier_send_attempts",
            "Send attempts by channel and resulting state.",
            ["channel", "result"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "notifier_send_seconds",
            "Time to hand one message to the channel.",
            ["channel"],
            buckets=SEND_BUCKETS,
            registry=r,
        )
        self.send_lateness = Histogram(
            "notifier_send_lateness_seconds",
            "Time from a row's due time to its recorded send (scheduler and delivery lag).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "notifier_webhook_requests",
            "Webhook requests by hook and HTTP status.",
            ["hook", "status"],
            registry=r,
        )
        self._webhook_children: dict[tuple[str, int], Counter] = {}
        self._send_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.scheduler_lag = Gauge(
            "notifier_scheduler_lag_seconds",
            "How late the timer fired its last job.",
            registry=r,
        )
        # Counting the ledger by state scans it: /metrics reuses one count this long, so that
        # several scrapers (or a dashboard refreshing) cost one scan per interval, not each.
        self.counts_ttl = METRICS_COUNTS_TTL
        self._counts_at: float | None = None
        self.config_errors = Gauge(
            "notifier_config_errors",
            "Problems in the files on disk that the running config rejected (0 when clean).",
            registry=r,
        )

    def count_webhook(self, hook: str, status: int) -> None:
        """One webhook request. The labelled child is looked up once per (hook, status):
        `labels()` validates and locks, a noticeable share of a request at thousands a second.
        Hook ids come from config, so the cache is as bounded as the metric's label set."""
        key = (hook, status)
        child = self._webhook_children.get(key)
        if child is None:
            child = self._webhook_children[key] = self.webhooks.labels(hook, str(status))
        child.inc()

    def observe_send(self, channel: str, result: str, seconds: float) -> None:
        # The labelled children, looked up once: `labels()` cost 4% of a send (py-spy).
        children = self._send_children.get((channel, result))
        if children is None:
            children = (
                self.send_attempts.labels(channel, result),
                self.send_seconds.labels(channel),
            )
            self._send_children[(channel, result)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_lateness(self, seconds: float) -> None:
        self.send_lateness.observe(max(0.0, seconds))

    def set_counts(self, counts: dict[tuple[str, str], int]) -> None:
        self.deliveries.clear()
        for (state, channel), n in counts.items():
            self.deliveries.labels(state, channel).set(n)

    def counts_due(self, now: float) -> bool:
        """Whether the ledger counts are older than `counts_ttl` (monotonic seconds), and if
        so, claim the refresh: scrapes arriving while it runs serve the previous counts."""
        if self._counts_at is not None and 0 <= now - self._counts_at < self.counts_ttl:
            return False
        self._counts_at = now
        return True

    def render(self) -> bytes:
        return generate_latest(self.registry)
