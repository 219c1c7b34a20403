"""The core of the live service, one job per module, composed by
:class:`~twinedge.runtime.service.TwinService` into the one object the front ends call.

Every mutation (an HTTP write, a device report over MQTT, the orchestrator moving a
twin) becomes a small function from the current document to the new one and goes into
one queue. A single writer task drains the queue in batches, applies the functions in
order on top of the in-memory twins, commits the whole batch to the store in one
transaction (group commit) from a dedicated thread, and only then updates the cache,
answers the callers (HTTP 2xx, MQTT PUBACK), publishes events and sends desired state to
devices. One writer means no lost updates and no locks; batching is what makes durable
writes fast.

Modules, in the order they depend on each other:

* :mod:`.pools` — the threads that run store calls off the event loop (one writer
  thread, a few readers).
* :mod:`.writer` — the write queue (how work enters: mutations, exclusive steps) and the
  single writer task (batching, group commit, commit isolation, the cache of twins).
* :mod:`.access` — who may do what: API keys, device credentials, grants and what they
  make visible, namespaces and their owner domains.
* :mod:`.groups` — named groups of twins and their membership, kept current by the
  writer.
* :mod:`.events` — subscriptions and the CloudEvents published after each commit.
* :mod:`.devices` — what goes to devices: desired state after a commit, commands and
  their answers, the end of a deleted thing's sessions.
* :mod:`.reads` — reading twins (now or as of a revision or time), paths, deltas,
  history, search, counts and aggregates.
* :mod:`.writes` — the mutations of the API (create, replace, patch, delete, desired
  state), device reports and the orchestrator's host changes, all through the writer.
* :mod:`.replica` — edge replication: the records edge hosts push, applied once each
  and in order through the writer, with each twin's replica position committed in the
  same transaction.
* :mod:`.health` — the health report and history retention.

The core never knows which front end called it: HTTP, WebSocket, MQTT and the
orchestrator all go through the same methods with a :class:`~twinedge.runtime.auth.Principal`,
and it refuses requests with :mod:`twinedge.errors`, never with a transport's status.
"""
