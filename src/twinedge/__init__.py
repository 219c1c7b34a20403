"""twinedge — digital twin edge networks.

Simulate a city-scale cloud–edge–device network in virtual time (`twinedge run`),
place and migrate the digital twins of moving entities, and record every decision
in a verifiable ledger.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twinedge")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
