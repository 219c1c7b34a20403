"""The edge tier, transport-agnostic: twins served by edge hosts near their devices.

Modules: :mod:`.log` (the durable SQLite log of an edge host: records, snapshots,
ownership, recovery), :mod:`.document` (the twin document and the checks every change
passes), :mod:`.errors` (the error tree).
"""
