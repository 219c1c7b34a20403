"""The sender rule inside a simulation: every entity a device, one sample a step.

:class:`SyncMeter` is what the engine runs for a scenario's ``sync:`` section: after the
entities move, each one's position is offered to a
:class:`~twinedge.sync.sender.SenderArray` (velocity and acceleration estimated from
the steps, as a device without a speedometer), and the reports, their bytes and the
twins' errors are counted; :meth:`SyncMeter.summary` gives the run summary's
``sync_*`` numbers (docs/sync.md).

Examples:
    >>> import numpy as np
    >>> m = SyncMeter(2, "first-order", threshold_m=1.0, heartbeat_s=None)
    >>> for k in range(4):  # one entity parked, one at 10 m/s
    ...     _ = m.step(float(k), np.array([[0.0, 0.0], [10.0 * k, 0.0]]))
    >>> s = m.summary()
    >>> s["sync_samples"], s["sync_reports"], round(s["sync_bytes_saved"], 3)
    (8, 3, 0.518)
"""

from __future__ import annotations

import numpy as np

from twinedge.sync.errors import SyncError
from twinedge.sync.predict import PREDICTORS
from twinedge.sync.sender import ByteModel, SenderArray

__all__ = ["SYNC_SUMMARY_KEYS", "SyncMeter"]

SYNC_SUMMARY_KEYS = (
    "sync_threshold_m",
    "sync_samples",
    "sync_reports",
    "sync_bytes",
    "sync_full_bytes",
    "sync_bytes_saved",
    "sync_reports_saved",
    "sync_mean_error_m",
    "sync_max_error_m",
    "sync_max_age_s",
)
"""The keys :meth:`SyncMeter.summary` adds to a run summary."""


class SyncMeter:
    """The sender rule over ``n`` entities, one sample each per :meth:`step`.

    Parameters:
        n: entities.
        predictor: a name of :data:`twinedge.sync.predict.PREDICTORS`.
        threshold_m: the rule's threshold (metres).
        heartbeat_s: the heartbeat (seconds), or ``None``.
        byte_model: sizes of samples and reports (default :class:`ByteModel()`).

    Raises:
        SyncError: an unknown predictor, or a bad threshold or heartbeat.
    """

    def __init__(
        self,
        n: int,
        predictor: str,
        threshold_m: float,
        heartbeat_s: float | None,
        byte_model: ByteModel | None = None,
    ):
        cls = PREDICTORS.get(predictor)
        if cls is None:
            raise SyncError(f"unknown predictor {predictor!r}; use one of {', '.join(PREDICTORS)}")
        self.sender = SenderArray(n, 2, cls.order, threshold_m, heartbeat_s)
        self.bm = byte_model or ByteModel()
        self.report_bytes = self.bm.report_bytes(cls.order, 2)
        self.samples = 0
        self.reports = 0
        self.error_sum_m = 0.0
        self.max_error_m = 0.0
        self.max_age_s = 0.0

    def step(self, t_s: float, xy_m: np.ndarray) -> np.ndarray:
        """Offer every entity's position at ``t_s``; the entities that send a report."""
        sent = self.sender.step(t_s, xy_m)
        err = self.sender.receiver_error
        self.samples += err.size
        self.reports += int(sent.sum())
        self.error_sum_m += float(err.sum())
        self.max_error_m = max(self.max_error_m, float(err.max()))
        self.max_age_s = max(self.max_age_s, float(self.sender.age_s.max()))
        return sent

    def summary(self) -> dict[str, float]:
        """The ``sync_*`` numbers (:data:`SYNC_SUMMARY_KEYS`); bytes saved against
        sending every sample."""
        full = self.samples * self.bm.sample_bytes(2)
        sent = self.reports * self.report_bytes
        return {
            "sync_threshold_m": self.sender.threshold,
            "sync_samples": self.samples,
            "sync_reports": self.reports,
            "sync_bytes": sent,
            "sync_full_bytes": full,
            "sync_bytes_saved": 1.0 - sent / full if full else 0.0,
            "sync_reports_saved": 1.0 - self.reports / self.samples if self.samples else 0.0,
            "sync_mean_error_m": self.error_sum_m / self.samples if self.samples else 0.0,
            "sync_max_error_m": self.max_error_m,
            "sync_max_age_s": self.max_age_s,
        }
