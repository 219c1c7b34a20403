"""The ``twinedge ledger`` commands: init, append, checkpoint, show, prove, verify, audit, settle.

A thin layer over :mod:`twinedge.ledger`: it parses arguments, prints text or (with
``--json``) machine-readable JSON, and turns every user mistake into one line
``error: ...`` with exit code 2.  Verification and audit failures exit with code 1.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from twinedge.errors import TwinedgeError
from twinedge.ledger import merkle
from twinedge.ledger.audit import audit as run_audit
from twinedge.ledger.ledgerdir import LedgerDir
from twinedge.ledger.note import Verifier
from twinedge.ledger.settle import PriceTable, format_micro
from twinedge.ledger.settle import settle as run_settle

app = typer.Typer(
    name="ledger",
    help="Signed, witnessed, append-only logs of orchestration decisions (one per domain).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
_BATCH = 10_000

DirArg = Annotated[Path, typer.Argument(help="Ledger directory (one sub-directory per domain).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _user_errors(fn: F) -> F:
    """Turn TwinedgeError / sqlite3.Error / OSError into one ``error:`` line, exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TwinedgeError as exc:
            raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except sqlite3.Error as exc:
            raise _fail(
                f"a log file is damaged or unreadable (sqlite: {exc}); "
                "locate the damage with: twinedge ledger verify DIR"
            ) from None
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise _fail(f"{exc.strerror or exc}{where}") from None

    return wrapper  # type: ignore[return-value]


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def _trusted_keys(keys: list[str] | None) -> list[Verifier]:
    """Verifier keys given as vkey strings or as paths of files holding one per line."""
    out = []
    for k in keys or []:
        p = Path(k)
        if p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    out.append(Verifier.from_vkey(line))
        else:
            out.append(Verifier.from_vkey(k))
    return out


@app.command()
@_user_errors
def init(
    ledger_dir: DirArg,
    domain: Annotated[
        list[str], typer.Option("--domain", "-d", help="Domain to create (repeatable).")
    ],
    origin_prefix: Annotated[
        str, typer.Option(help="Checkpoint origin is '<prefix>/<domain>'.")
    ] = "twinedge",
) -> None:
    """Create a ledger directory, or add domains to one: a log, a key and a checkpoint each."""
    with LedgerDir.create(ledger_dir, domain, origin_prefix=origin_prefix) as ld:
        for d in domain:
            typer.echo(f"created domain {d}: {ld.verifier(d).vkey()}")


def _read_entries(source: str) -> Iterator[dict[str, Any]]:
    """Entries from a file or stdin ('-'): a JSON array, or one JSON object per line."""
    if source == "-":
        text = sys.stdin.read()
        name = "stdin"
    else:
        text = Path(source).read_text(encoding="utf-8")
        name = source
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TwinedgeError(f"{name} is not valid JSON ({exc})") from exc
        yield from data
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise TwinedgeError(
                    f"{name} line {lineno} is not a JSON object ({exc}); "
                    "give one entry per line or a JSON array"
                ) from exc


@app.command()
@_user_errors
def append(
    ledger_dir: DirArg,
    source: Annotated[
        str, typer.Argument(help="File of entries (JSON array or JSON lines); '-' reads stdin.")
    ] = "-",
    domain: Annotated[
        str | None, typer.Option("--domain", "-d", help="Require every entry to be of this domain.")
    ] = None,
) -> None:
    """Append entries (validated, canonicalised) in batches; each entry goes to its domain's log."""
    total: dict[str, list[int]] = {}
    with LedgerDir.open(ledger_dir) as ld:
        if domain is not None:
            ld.domain_dir(domain)
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            for d, r in ld.append_many(batch).items():
                span = total.setdefault(d, [r.start, r.stop])
                span[1] = r.stop
            batch.clear()

        for i, e in enumerate(_read_entries(source)):
            if domain is not None and isinstance(e, dict) and e.get("domain") != domain:
                raise TwinedgeError(
                    f"entry {i}: field 'domain' is {e.get('domain')!r}, not {domain!r}"
                )
            batch.append(e)
            if len(batch) >= _BATCH:
                flush()
        if batch:
            flush()
    if not total:
        typer.echo("no entries to append")
    for d, (a, b) in sorted(total.items()):
        typer.echo(f"appended {b - a} entries to {d} (indices {a}..{b - 1})")


@app.command()
@_user_errors
def checkpoint(
    ledger_dir: DirArg,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", "-d", help="Sign only these domains (no witnessing)."),
    ] = None,
    witness: Annotated[
        bool, typer.Option(help="Record each checkpoint in every other domain's log.")
    ] = True,
) -> None:
    """Sign checkpoints (tree size + root) for all domains, witnessed by the others."""
    with LedgerDir.open(ledger_dir) as ld:
        if domain:
            notes = {d: ld.checkpoint(d) for d in domain}
        else:
            notes = ld.checkpoint_all(witness=witness)
        for d, note in notes.items():
            size, root = note.split("\n")[1:3]
            typer.echo(f"signed {d}: size {size} root {root}")


@app.command()
@_user_errors
def show(
    ledger_dir: DirArg,
    domain: Annotated[str | None, typer.Option("--domain", "-d", help="Show this domain.")] = None,
    start: Annotated[int, typer.Option(help="First entry index to print.")] = 0,
    limit: Annotated[int, typer.Option(help="Number of entries to print (with --domain).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Show domains (size, root, checkpoint, key) or, with --domain --limit N, entries."""
    with LedgerDir.open(ledger_dir) as ld:
        infos = []
        for d in [domain] if domain else ld.domains:
            log = ld.log(d)
            cp = ld.open_latest(d) if ld.latest_checkpoint(d) else None
            info: dict[str, Any] = {
                "domain": d,
                "origin": log.origin,
                "size": log.size,
                "root": log.root().hex(),
                "checkpoint_size": cp.size if cp else None,
                "checkpoint_root": cp.root.hex() if cp else None,
                "vkey": ld.verifier(d).vkey(),
            }
            if domain and limit > 0:
                if not 0 <= start <= log.size:
                    raise TwinedgeError(f"--start {start} is outside 0..{log.size}")
                end = min(log.size, start + limit)
                info["entries"] = [
                    {"index": i, "entry": json.loads(data)} for i, data in log.iter_raw(start, end)
                ]
            infos.append(info)
    if as_json:
        _echo_json(infos if not domain else infos[0])
        return
    for info in infos:
        cps = "none" if info["checkpoint_size"] is None else str(info["checkpoint_size"])
        typer.echo(
            f"{info['domain']}: {info['size']} entries, root {info['root']}, "
            f"checkpoint at {cps}, origin {info['origin']}"
        )
        for e in info.get("entries", []):
            typer.echo(f"  {e['index']}: {json.dumps(e['entry'], sort_keys=True)}")


@app.command()
@_user_errors
def prove(
    ledger_dir: DirArg,
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain whose log to prove.")],
    index: Annotated[
        int | None, typer.Option("--index", "-i", help="Inclusion proof of this entry.")
    ] = None,
    old_size: Annotated[
        int | None, typer.Option("--old-size", help="Consistency proof from this tree size.")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Tree size (default: latest checkpoint's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an inclusion proof (--index) or a consistency proof (--old-size), self-checked."""
    if (index is None) == (old_size is None):
        raise _fail("give exactly one of --index I (inclusion) or --old-size N (consistency)")
    with LedgerDir.open(ledger_dir) as ld:
        log = ld.log(domain)
        if size is None:
            size = ld.open_latest(domain).size if ld.latest_checkpoint(domain) else log.size
        if size > log.size:
            raise TwinedgeError(f"--size {size} is larger than the log ({log.size} entries)")
        root = log.root(size)
        out: dict[str, Any] = {"domain": domain, "origin": log.origin, "size": size}
        if index is not None:
            proof = log.inclusion_proof(index, size)
            leaf = merkle.leaf_hash(log.entry_bytes(index))
            ok = merkle.verify_inclusion(leaf, index, size, proof, root)
            out |= {"kind": "inclusion", "index": index, "leaf_hash": leaf.hex()}
        else:
            assert old_size is not None
            proof = log.consistency_proof(old_size, size)
            old_root = log.root(old_size)
            ok = merkle.verify_consistency(old_size, size, old_root, root, proof)
            out |= {"kind": "consistency", "old_size": old_size, "old_root": old_root.hex()}
        out |= {"root": root.hex(), "proof": [p.hex() for p in proof], "verified": ok}
    if as_json:
        _echo_json(out)
    else:
        for k, v in out.items():
            if k == "proof":
                typer.echo("proof:")
                for p in v:
                    typer.echo(f"  {p}")
            else:
                typer.echo(f"{k}: {v}")
    if not ok:
        raise typer.Exit(1)


@app.command()
@_user_errors
def verify(
    ledger_dir: DirArg,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", "-d", help="Verify only these domains.")
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", help="Trusted verifier key (vkey text or file); repeatable."),
    ] = None,
    entry_check: Annotated[
        bool, typer.Option(help="Also check every entry is valid canonical JSON.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Re-derive every hash from the entries and check them against the signed checkpoints."""
    with LedgerDir.open(ledger_dir) as ld:
        reports = ld.verify(domain, verifiers=_trusted_keys(key), check_entries=entry_check)
    if as_json:
        _echo_json({"ok": all(r.ok for r in reports), "logs": [r.to_dict() for r in reports]})
    else:
        for r in reports:
            typer.echo(r.summary(), err=not r.ok)
            for p in r.problems[1:] if len(r.problems) > 1 else []:
                typer.echo(f"  also: {p}", err=True)
            for w in r.warnings:
                typer.echo(f"  warning: {w}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@app.command()
@_user_errors
def audit(
    ledger_dirs: Annotated[
        list[Path], typer.Argument(help="Ledger directories (yours and copies of others').")
    ],
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", "-c", help="A presented signed checkpoint file; repeatable."),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", help="Trusted verifier key (vkey text or file); repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Report split views, bad checkpoint signatures and failing inclusion proofs."""
    presented = [(str(p), p.read_text(encoding="utf-8")) for p in checkpoint or []]
    vkeys = [v.vkey() for v in _trusted_keys(key)]
    rep = run_audit(list(ledger_dirs), checkpoints=presented, vkeys=vkeys)
    if as_json:
        _echo_json(rep.to_dict())
    else:
        for issue in rep.issues:
            typer.echo(
                f"{issue.kind}: {issue.origin}: {issue.detail}", err=issue.kind != "unchecked"
            )
        typer.echo(
            f"{'ok' if rep.ok else 'FAILED'}: {len(rep.origins)} logs, {rep.checkpoints} "
            f"checkpoints, {rep.consistency_proofs} consistency and {rep.inclusion_proofs} "
            "inclusion proofs checked"
        )
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
@_user_errors
def settle(
    ledger_dir: DirArg,
    prices: Annotated[
        Path, typer.Option("--prices", "-p", help="Price table (.yaml, .yml or .json).")
    ],
    until: Annotated[
        float | None, typer.Option(help="End of the run in seconds (default: the 'end' entry).")
    ] = None,
    append_entries: Annotated[
        bool,
        typer.Option("--append", help="Append a settlement entry to every domain and re-sign."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every domain's bill from the logs alone (exact, reproducible totals)."""
    table = PriceTable.load(prices)
    with LedgerDir.open(ledger_dir) as ld:
        bills = run_settle(ld, table, until=until)
        if append_entries:
            ld.append_many(bills.settlement_entries())
            ld.checkpoint_all(witness=False)
    if as_json:
        _echo_json(bills.to_dict())
        return
    typer.echo(f"settlement until t={bills.until} s in {bills.currency}, digest {bills.digest}")
    for d, b in sorted(bills.bills.items()):
        typer.echo(
            f"{d}: owes {format_micro(b.owes_micro)}, earns {format_micro(b.earns_micro)}, "
            f"net {format_micro(b.net_micro)}"
        )
        for li in b.lines:
            typer.echo(
                f"  {li.kind:<9} {li.payer} -> {li.payee} [{li.tier}] "
                f"{float(li.quantity):.6g} {li.unit} = "
                f"{format_micro(li.amount_micro)}"
            )
    for w in bills.warnings:
        typer.echo(f"warning: {w}")
    if append_entries:
        typer.echo("appended a settlement entry to every domain and signed new checkpoints")
