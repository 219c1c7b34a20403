"""XR split rendering: sessions as frame streams (frames as PDU sets, I/P structure,
asynchronous time-warp), rendered on the headset, an edge host or further up and moved
as load and position change, measured frame by frame and scored on the XRMI scale (1-5).

:mod:`.frames` generates and classifies one step's frames of every session (vectorised
over sessions x frames), :mod:`.score` is the experience score, :mod:`.sessions` places
the sessions over a :class:`~twinedge.orchestrator.NetworkView` and accumulates a run's
KPIs; the engine calls it every step when a scenario has an ``xr:`` section
(docs/xr.md has the model, its formulas and sources).
"""

from twinedge.xr.frames import QOS_PROFILES, FrameBatch, FrameSpec, StreamState, generate_frames
from twinedge.xr.score import WEIGHTS, Kpis, sub_scores, xrmi
from twinedge.xr.sessions import DEVICE, PLACEMENTS, XR_SUMMARY_KEYS, XrRun

__all__ = [
    "DEVICE",
    "PLACEMENTS",
    "QOS_PROFILES",
    "WEIGHTS",
    "XR_SUMMARY_KEYS",
    "FrameBatch",
    "FrameSpec",
    "Kpis",
    "StreamState",
    "XrRun",
    "generate_frames",
    "sub_scores",
    "xrmi",
]
