"""The live service (`twinedge serve`): twins of real devices over HTTP, WebSocket and
MQTT, stored durably in SQLite or PostgreSQL, searchable, grouped, multi-domain.

Modules: :mod:`.things` (the document and pure functions on it), :mod:`.rql` (the filter
language), :mod:`.store` (SQLite / PostgreSQL), :mod:`.service` (the core: one writer,
events, groups, access), :mod:`.api` (HTTP / WebSocket / SSE), :mod:`.mqtt` (broker and
bridge), :mod:`.app` (wiring, configuration, operations).
"""
