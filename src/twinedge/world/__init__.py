"""The world: struct-of-arrays state of nodes, links, entities and twins, and the
latency / energy models evaluated on it (vectorised over entities)."""

from twinedge.world.build import build_world
from twinedge.world.state import World

__all__ = ["World", "build_world"]
