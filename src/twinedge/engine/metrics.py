"""Metrics of a run, accumulated step by step into fixed-size arrays.

Latency percentiles over all twin-steps come from a log-spaced histogram (2,000 bins
per decade is more than enough: bin edges are 0.12% apart), so memory does not grow
with entities x steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HIST_LO_MS, HIST_HI_MS, BINS_PER_DECADE = 1e-3, 1e6, 2000
_N_BINS = round(np.log10(HIST_HI_MS / HIST_LO_MS) * BINS_PER_DECADE)
HIST_EDGES_MS = HIST_LO_MS * 10.0 ** (np.arange(_N_BINS + 1) / BINS_PER_DECADE)

STEP_COLUMNS = (
    "t_s",
    "mean_latency_ms",
    "p95_latency_ms",
    "deadline_misses",
    "migrations",
    "migration_downtime_s",
    "bytes_migrated",
    "device_energy_j",
    "server_energy_j",
    "mean_utilisation",
    "max_utilisation",
    "replacement_migrations",
)

#: The numbers of a run's summary, in the order of the tables (the keys of ``summary.json``).
SUMMARY_KEYS = (
    "mean_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "deadline_miss_ratio",
    "migrations",
    "replacement_migrations",
    "migration_downtime_s",
    "bytes_migrated",
    "device_energy_j",
    "server_energy_j",
    "mean_utilisation",
    "max_utilisation",
)


def histogram_bins(latency_ms: np.ndarray) -> np.ndarray:
    """Bin index of every latency (clipped into the histogram's range)."""
    x = np.clip(latency_ms, HIST_LO_MS, HIST_HI_MS * 0.999999)
    x /= HIST_LO_MS  # in place: the same operations, the same bits
    np.log10(x, out=x)
    x *= BINS_PER_DECADE
    return x.astype(np.int64)


def histogram_quantile(counts: np.ndarray, q: float) -> float:
    """The q-quantile (0..1) of a latency histogram: the geometric centre of its bin."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    k = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
    return float(np.sqrt(HIST_EDGES_MS[k] * HIST_EDGES_MS[k + 1]))


@dataclass
class Metrics:
    steps: int
    n_hosts: int
    n_trails: int
    step_values: np.ndarray = field(init=False)
    utilisation: np.ndarray = field(init=False)  # (steps, H) float32
    trails: np.ndarray = field(init=False)  # (steps, n_trails, 2) float32
    hist: np.ndarray = field(init=False)
    latency_sum_ms: float = 0.0
    twin_steps: int = 0
    misses: int = 0

    def __post_init__(self) -> None:
        self.step_values = np.zeros((self.steps, len(STEP_COLUMNS)))
        self.utilisation = np.zeros((self.steps, self.n_hosts), dtype=np.float32)
        self.trails = np.zeros((self.steps, self.n_trails, 2), dtype=np.float32)
        self.hist = np.zeros(_N_BINS, dtype=np.int64)

    def record(
        self,
        k: int,
        t_s: float,
        latency_ms: np.ndarray,
        req_ms: np.ndarray,
        util: np.ndarray,
        migrations: int,
        downtime_s: float,
        bytes_moved: float,
        device_j: float,
        server_j: float,
        trail_xy: np.ndarray,
        replaced: int = 0,
    ) -> None:
        """Record step ``k``; ``replaced`` of the ``migrations`` came from a re-placement."""
        miss = int(np.count_nonzero(latency_ms > req_ms))
        self.hist += np.bincount(histogram_bins(latency_ms), minlength=_N_BINS)
        total_ms = latency_ms.sum()
        self.latency_sum_ms += float(total_ms)
        self.twin_steps += latency_ms.size
        self.misses += miss
        k95 = int(0.95 * (latency_ms.size - 1))
        p95 = float(np.partition(latency_ms, k95)[k95])
        self.step_values[k] = (
            t_s,
            total_ms / latency_ms.size,  # the mean: ndarray.mean divides the same sum
            p95,
            miss,
            migrations,
            downtime_s,
            bytes_moved,
            device_j,
            server_j,
            util.mean(),
            util.max(),
            replaced,
        )
        self.utilisation[k] = util
        self.trails[k] = trail_xy

    def summary(self) -> dict:
        col = {c: self.step_values[:, i] for i, c in enumerate(STEP_COLUMNS)}
        return {
            "mean_latency_ms": self.latency_sum_ms / max(self.twin_steps, 1),
            "p50_latency_ms": histogram_quantile(self.hist, 0.50),
            "p95_latency_ms": histogram_quantile(self.hist, 0.95),
            "p99_latency_ms": histogram_quantile(self.hist, 0.99),
            "deadline_miss_ratio": self.misses / max(self.twin_steps, 1),
            "migrations": int(col["migrations"].sum()),
            # the spikes at the end of each placement period: moves the re-placement made
            "replacement_migrations": int(col["replacement_migrations"].sum()),
            "migration_downtime_s": float(col["migration_downtime_s"].sum()),
            "bytes_migrated": float(col["bytes_migrated"].sum()),
            "device_energy_j": float(col["device_energy_j"].sum()),
            "server_energy_j": float(col["server_energy_j"].sum()),
            "mean_utilisation": float(self.utilisation.mean()),
            "max_utilisation": float(self.utilisation.max()),
        }
