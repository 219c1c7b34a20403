"""The EdgeSimPy half of ``bench_edgesimpy.py``: run in EdgeSimPy's own virtual
environment (never imported by twinedge), it builds the hex-grid workload with
EdgeSimPy's own dataset helpers, runs it, and prints per-step wall times as JSON.

    python edgesimpy_driver.py WORKLOAD.json [--dataset CACHE.json]

The workload file (written by ``bench_edgesimpy.py``) fixes the grid, the users' start
cells and their walks (one cell index per step), the server and service sizes and the
link delay, so both simulators see the same topology and the same movements.

What EdgeSimPy does per step (``Simulator.step`` + ``Simulator.monitor``, the body of its
``run_model`` loop):

* the resource management algorithm below (follow the user): for every service not being
  provisioned whose server is not at its user's base station, take the first of the 8
  edge servers nearest that base station (breadth-first over the mesh, cached per base
  station) that ``has_capacity_to_host`` it and ``provision`` it there, unless its current
  server comes first;
* the agents' ``step`` (EdgeSimPy's default scheduler): edge servers (download queues),
  services (migration progress: a migration finishes one step after it starts, as every
  server already caches the image, and re-routes the user with a Dijkstra path), the
  topology's flow scheduling, users (access pattern bookkeeping; a user whose walk changed
  cell looks up its new base station and recomputes its path and delay), and every other
  agent's empty ``step``;
* ``monitor``: every agent's ``collect`` (timed apart: ``monitor_s``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time

from edge_sim_py import (
    Application,
    BaseStation,
    CircularDurationAndIntervalAccessPattern,
    ComponentManager,
    ContainerImage,
    ContainerLayer,
    EdgeServer,
    LinearServerPowerModel,
    NetworkSwitch,
    Service,
    Simulator,
    User,
    hexagonal_grid,
    partially_connected_hexagonal_mesh,
    random_mobility,
    sample_switch,
)

CANDIDATES = 8
LAYER_DIGEST = "sha256:bench-layer"
IMAGE_DIGEST = "sha256:bench-image"


def build_dataset(w: dict) -> dict:
    """Create the components with EdgeSimPy's helpers and export them as a dataset."""
    side = w["grid_side"]
    cells = [tuple(c) for c in hexagonal_grid(x_size=side, y_size=side)]
    if [list(c) for c in cells] != w["cells"]:
        raise SystemExit("EdgeSimPy's hexagonal_grid differs from the benchmark's grid")
    for xy in cells:
        bs = BaseStation()
        bs.wireless_delay = 0
        bs.coordinates = xy
        bs._connect_to_network_switch(network_switch=sample_switch())
        server = EdgeServer()
        server.model_name = "bench"
        server.cpu, server.memory, server.disk = (w["server"][k] for k in ("cpu", "memory", "disk"))
        server.power_model = LinearServerPowerModel
        server.power_model_parameters = {
            "max_power_consumption": 265,
            "static_power_percentage": 0.6,
        }
        bs._connect_to_edge_server(edge_server=server)
        # every server caches the one service image (a migration pulls no layers)
        layer = ContainerLayer(digest=LAYER_DIGEST, size=1, instruction="bench")
        layer.server = server
        server.container_layers.append(layer)
        server.disk_demand += layer.size
        image = ContainerImage(name="bench", digest=IMAGE_DIGEST, layers=[LAYER_DIGEST])
        image.server = server
        server.container_images.append(image)
    n_links = w["links"]
    partially_connected_hexagonal_mesh(
        network_nodes=NetworkSwitch.all(),
        link_specifications=[
            {
                "number_of_objects": n_links,
                "delay": w["link_delay"],
                "bandwidth": w["link_bandwidth"],
            }
        ],
    )
    servers = EdgeServer.all()
    steps = w["steps"]
    for walk in w["walks"]:
        app = Application()
        service = Service(
            image_digest=IMAGE_DIGEST,
            cpu_demand=w["service"]["cpu"],
            memory_demand=w["service"]["memory"],
            state=0,
        )
        app.connect_to_service(service)
        user = User()
        user.mobility_model = random_mobility  # never called: the walk covers the run
        user._set_initial_position(coordinates=cells[walk[0]], number_of_replicates=1)
        user.coordinates_trace = [cells[c] for c in walk]
        user._connect_to_application(app=app, delay_sla=w["delay_sla"])
        CircularDurationAndIntervalAccessPattern(
            user=user, app=app, start=1, duration_values=[steps + 10], interval_values=[0]
        )
        # initial placement: the server at the user's base station (twinedge: ``nearest``)
        server = servers[walk[0]]
        service.server = server
        server.services.append(service)
        server.cpu_demand += service.cpu_demand
        server.memory_demand += service.memory_demand
        service._available = True
        user.set_communication_path(app=app)
    return ComponentManager.export_scenario(save_to_file=False)


_near: dict[int, list] = {}


def nearest_servers(bs) -> list:
    """The ``CANDIDATES`` edge servers nearest ``bs`` (breadth-first over the mesh)."""
    got = _near.get(bs.id)
    if got is not None:
        return got
    topology = bs.model.topology
    seen = {bs.network_switch}
    queue = collections.deque([bs.network_switch])
    out: list = []
    while queue and len(out) < CANDIDATES:
        switch = queue.popleft()
        out.extend(switch.edge_servers)
        for nb in topology.neighbors(switch):
            if nb not in seen:
                seen.add(nb)
                queue.append(nb)
    _near[bs.id] = out[:CANDIDATES]
    return _near[bs.id]


def follow_user(parameters: dict) -> None:
    """Migrate each service to the nearest edge server with room to its user's cell."""
    for service in Service.all():
        if service.being_provisioned:
            continue
        user = service.application.users[0]
        if service.server.base_station is user.base_station:
            continue
        for server in nearest_servers(user.base_station):
            if server is service.server:
                break
            if server.has_capacity_to_host(service=service):
                service.provision(target_server=server)
                parameters["migrations"] = parameters.get("migrations", 0) + 1
                break


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--dataset", help="cache of the built dataset (read if present)")
    args = ap.parse_args()
    with open(args.workload, encoding="utf-8") as f:
        w = json.load(f)
    os.chdir(tempfile.mkdtemp(prefix="edgesimpy-bench-"))  # EdgeSimPy writes datasets/, logs/
    t0 = time.perf_counter()
    if args.dataset and os.path.exists(args.dataset):
        with open(args.dataset, encoding="utf-8") as f:
            data = json.load(f)
    else:
        Simulator()  # the helpers need a model to exist
        data = build_dataset(w)
        if args.dataset:
            tmp = args.dataset + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, args.dataset)
    build_s = time.perf_counter() - t0
    steps = w["steps"]
    params: dict = {}
    sim = Simulator(
        tick_duration=1,
        tick_unit="seconds",
        stopping_criterion=lambda model: model.schedule.steps == steps,
        resource_management_algorithm=follow_user,
        resource_management_algorithm_parameters=params,
        dump_interval=float("inf"),
    )
    t0 = time.perf_counter()
    sim.initialize(input_file=data)
    load_s = time.perf_counter() - t0
    if User.count() != len(w["walks"]) or EdgeServer.count() != len(w["cells"]):
        raise SystemExit("the loaded dataset does not match the workload")
    step_s, monitor_s = [], []
    sim.monitor()
    sim.agent_metrics = {}
    while sim.running:
        t0 = time.perf_counter()
        sim.step()
        t1 = time.perf_counter()
        sim.monitor()
        t2 = time.perf_counter()
        sim.agent_metrics = {}  # keep memory flat over long runs (outside the timing)
        step_s.append(t1 - t0)
        monitor_s.append(t2 - t1)
        sim.running = not sim.stopping_criterion(sim)
    import edge_sim_py
    import mesa
    import networkx

    print(
        json.dumps(
            {
                "edgesimpy": getattr(edge_sim_py, "__version__", None),
                "python": platform.python_version(),
                "mesa": mesa.__version__,
                "networkx": networkx.__version__,
                "executable": sys.executable,
                "users": User.count(),
                "edge_servers": EdgeServer.count(),
                "base_stations": BaseStation.count(),
                "links": len(sim.topology.edges()),
                "agents": len(sim.schedule._agents),
                "steps": len(step_s),
                "build_s": round(build_s, 3),
                "load_s": round(load_s, 3),
                "step_s": step_s,
                "monitor_s": monitor_s,
                "migrations": params.get("migrations", 0),
                "moved_cells": sum(
                    1 for walk in w["walks"] for k in range(1, len(walk)) if walk[k] != walk[k - 1]
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
