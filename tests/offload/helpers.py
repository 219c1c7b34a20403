"""Small offloading problems built by hand (no world needed)."""

from __future__ import annotations

import numpy as np

from twinedge.offload import OffloadModel, TaskBatch, TaskProblem


def make_problem(
    *,
    gcycles,
    input_bytes=1e6,
    output_bytes=1e5,
    deadline_ms=100.0,
    splittable=False,
    f_local_ghz=1.0,
    kappa=1e-27,
    tx_power_w=0.5,
    up_ms=100.0,
    down_ms=10.0,
    host_ghz=(10.0,),
    host_rho=(0.5,),
    host_j_per_gcycle=(20.0,),
    cap_gcycles=(100.0,),
    backbone_ms=(5.0,),
    entity=None,
    model: OffloadModel | None = None,
) -> TaskProblem:
    """A problem with one access point; every host is a candidate of every task."""
    g = np.atleast_1d(np.asarray(gcycles, dtype=float))
    n, h = g.size, len(host_ghz)
    ent = np.arange(n) if entity is None else np.asarray(entity)
    batch = TaskBatch.of(
        ent,
        g,
        input_bytes,
        output_bytes,
        deadline_ms,
        splittable,
        f_local_ghz,
        kappa,
        tx_power_w,
        model=model or OffloadModel(),
    )
    rho = np.asarray(host_rho, dtype=float)
    return TaskProblem(
        batch=batch,
        ap=np.zeros(n, dtype=np.int64),
        up_ms_full=np.broadcast_to(np.asarray(up_ms, float), (n,)).copy(),
        down_ms_full=np.broadcast_to(np.asarray(down_ms, float), (n,)).copy(),
        host_ghz=np.asarray(host_ghz, dtype=float),
        host_qf=1.0 / (1.0 - rho),
        host_j_per_gcycle=np.asarray(host_j_per_gcycle, dtype=float),
        cap_gcycles=np.asarray(cap_gcycles, dtype=float),
        ap_host_ms=np.asarray(backbone_ms, dtype=float)[None, :],
        cand=np.tile(np.arange(h), (n, 1)),
        cand_ok=np.ones((n, h), dtype=bool),
        host_tier=np.ones(h, dtype=np.int64),
        miss_penalty=batch.model.miss_penalty,
        energy_weight_per_j=batch.model.energy_weight_per_j,
        latency_weight_per_s=batch.model.latency_weight_per_s,
    )
