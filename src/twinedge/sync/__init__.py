"""Predictive sync: send only what the receiver cannot predict (see docs/sync.md).

A device and its twin run the same predictor. The device sends a report only when the
prediction is further than a threshold from the truth, or when a heartbeat period has
passed since its last report; between reports the twin serves the prediction, with its
age and error bound. The predictors are IEEE 1278.1 (DIS) dead reckoning of first
order (position + velocity) and second order (+ acceleration), and a constant value for
any other property.

* :mod:`twinedge.sync.predict` — reports, predictions, the predictors;
* :mod:`twinedge.sync.sender` — the sender rule, for one device (:class:`Sender`) and
  vectorised over many (:class:`SenderArray`);
* :mod:`twinedge.sync.traces` — the rule replayed on recorded traces: uplink bytes and
  the receiver's error over time (``twinedge sync``);
* :mod:`twinedge.sync.meter` — the rule inside a simulation (a scenario's ``sync:``
  section, the ``sync_*`` numbers of a run);
* :mod:`twinedge.sync.properties` — the rule live: how a report sits in a twin's
  properties and the prediction a read computes (``?estimate=prediction``).

The package depends on NumPy and :mod:`twinedge.errors` only; the engine, the device
emulator, the edge host and the service use it.
"""

from twinedge.sync.errors import SyncError
from twinedge.sync.predict import (
    PREDICTORS,
    ConstantValue,
    FirstOrder,
    Prediction,
    Predictor,
    Report,
    SecondOrder,
    extrapolate,
    make_predictor,
)
from twinedge.sync.sender import ByteModel, Sender, SenderArray

__all__ = [
    "PREDICTORS",
    "ByteModel",
    "ConstantValue",
    "FirstOrder",
    "Prediction",
    "Predictor",
    "Report",
    "SecondOrder",
    "Sender",
    "SenderArray",
    "SyncError",
    "extrapolate",
    "make_predictor",
]
