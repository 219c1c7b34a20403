"""twinedge — digital twin edge networks.

Simulate a city-scale cloud–edge–device network in virtual time (`twinedge run`),
place and migrate the digital twins of moving entities, and record every decision
in a verifiable ledger.
"""

__version__ = "0.1.0"
