"""The ``twinedge devices`` command (registered by :mod:`twinedge.cli`)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Annotated

import typer


def devices(
    scenario: Annotated[
        str, typer.Argument(help="A scenario YAML file, or a built-in name: city, city-small.")
    ],
    count: Annotated[
        int, typer.Option("--count", "-n", help="Devices: the first N entities of the world.")
    ],
    url: Annotated[
        str, typer.Option(help="HTTP address of twinedge serve.")
    ] = "http://127.0.0.1:8080",
    mqtt: Annotated[
        str, typer.Option(help="The broker the devices connect to (mqtt:// or mqtts://).")
    ] = "mqtt://127.0.0.1:1883",
    namespace: Annotated[str, typer.Option(help="Thing ids are NAMESPACE:ENTITY_ID.")] = "fleet",
    domain: Annotated[
        str | None,
        typer.Option(
            help="Owner domain of the things (service admin key only; default: the namespace)."
        ),
    ] = None,
    rate_hz: Annotated[
        float | None,
        typer.Option(
            help="Reports per second of every device (default: each entity's update_hz, at most 10, "
            "at most 1,000 in all)."
        ),
    ] = None,
    duration_s: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds (default: the scenario's steps x step_s)."),
    ] = None,
    reports: Annotated[
        int | None,
        typer.Option(help="Stop each device after this many acknowledged reports."),
    ] = None,
    warmup_s: Annotated[
        float,
        typer.Option(
            help="Also summarise the reports published after this many seconds apart "
            "(the summary's steady figures: the devices have connected and been redirected).",
        ),
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the scenario's).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="TWINEDGE_API_KEY",
            show_envvar=True,
            help="An admin API key: the service admin token (DATA_DIR/admin.token) or a domain admin key.",
        ),
    ] = None,
    device_password: Annotated[
        str | None,
        typer.Option(
            envvar="TWINEDGE_DEVICE_PASSWORD",
            show_envvar=True,
            help="One MQTT password for every device (default: a random one each).",
        ),
    ] = None,
    sync_threshold_m: Annotated[
        float | None,
        typer.Option(
            help="Predictive sync: sample at the rate, send a report only when the twin's "
            "prediction is more than this many metres off (or the heartbeat passed).",
        ),
    ] = None,
    sync_heartbeat_s: Annotated[
        float, typer.Option(help="Predictive sync: the longest time between two reports.")
    ] = 5.0,
    sync_predictor: Annotated[
        str, typer.Option(help="Predictive sync: constant, first-order or second-order.")
    ] = "first-order",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Afterwards, put what twinedge run predicts for the same scenario next to what "
            "was measured (needs serve --network).",
        ),
    ] = False,
    emulate_links: Annotated[
        bool | None,
        typer.Option(
            "--emulate-links/--no-emulate-links",
            help="Every report waits the one-way delay the scenario's network model gives its "
            "path (radio to the nearest access point, backbone to its twin's host), and its "
            "PUBACK likewise (default: on with --compare).",
            show_default=False,
        ),
    ] = None,
    link_delay_scale: Annotated[
        float, typer.Option(help="With --emulate-links: a factor of every modelled delay.")
    ] = 1.0,
) -> None:
    """Emulate devices that move as the scenario's entities do: provision a thing each,
    report positions over MQTT, follow redirects to other brokers."""
    from twinedge.devices.runner import FleetOptions, run_fleet
    from twinedge.scenario import load_scenario

    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        format="twinedge devices: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    options = FleetOptions(
        count=count,
        url=url,
        mqtt=mqtt,
        api_key=api_key or "",
        namespace=namespace,
        domain=domain,
        rate_hz=rate_hz,
        duration_s=duration_s,
        reports=reports,
        warmup_s=warmup_s,
        seed=seed,
        device_password=device_password,
        progress_s=0.0 if quiet else 5.0,
        sync_threshold_m=sync_threshold_m,
        sync_heartbeat_s=sync_heartbeat_s,
        sync_predictor=sync_predictor,
        emulate_links=compare if emulate_links is None else emulate_links,
        link_delay_scale=link_delay_scale,
    )
    options.check()  # before the scenario is loaded: option mistakes first
    sc = load_scenario(scenario)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    summary = asyncio.run(
        run_fleet(
            sc,
            options,
            source=scenario,
            progress=None if quiet else progress,
            handle_signals=True,
            settle_heap=True,
        )
    )
    t = summary["total"]
    if compare:
        from twinedge.devices.compare import compare as side_by_side
        from twinedge.devices.compare import live_status, table

        summary["comparison"] = side_by_side(sc, summary, live_status(url, api_key or ""))
        if not json_out:
            print(table(summary["comparison"]))
    if json_out:
        print(json.dumps(summary, indent=1))
    else:
        lat = t["latency_ms"]
        print(
            f"{t['devices']:,} devices: {t['sent']:,} reports sent, {t['acked']:,} acknowledged "
            f"(p50 {lat['p50']} ms, p99 {lat['p99']} ms, mean {lat['mean']} ms), "
            f"{t['unacked']:,} unacknowledged, "
            + (
                f"{t['suppressed']:,} samples predicted (not sent), "
                if sync_threshold_m is not None
                else ""
            )
            + f"{t['redirects_followed']:,} redirects followed, {t['errors']:,} errors; "
            f"stopped: {summary['stopped']}"
        )
        if "steady" in t:
            st = t["steady"]
            print(
                f"after {st['from_s']:g} s: {st['acked']:,} acknowledged in {st['window_s']:g} s "
                f"({st['acked_per_s']}/s; p50 {st['latency_ms']['p50']} ms, "
                f"p99 {st['latency_ms']['p99']} ms)"
            )
        if "link" in t:
            k = t["link"]
            print(
                f"emulated links: {k['reports']:,} reports acknowledged by a twin host, one-way "
                f"mean {k['mean_ms']} ms = network {k['network_mean_ms']} ms (the model) + "
                f"live {k['live_mean_ms']} ms (PUBLISH written -> PUBACK read); the emulator's "
                f"own time left out: {k['emulator_mean_ms']} ms; "
                f"{k['unemulated']:,} acknowledged elsewhere (no delay)"
            )
    if t["unacked"] or t["ever_connected"] < t["devices"]:
        raise typer.Exit(1)
