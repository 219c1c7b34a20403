"""The ``twinedge ledger`` commands: init, append, checkpoint, show, prove, verify, audit, settle.

A thin layer over :mod:`twinedge.ledger`: it parses arguments, prints text or (with
``--json``) machine-readable JSON, and turns every user mistake into one line
``error: ...`` with exit code 2.  Verification and audit failures exit with code 1.

Input to ``append`` is bounded and checked before anything is written: at most
:data:`MAX_INPUT_BYTES` of UTF-8 text, JSON nested at most :data:`MAX_DEPTH` deep,
integers of at most 19 digits, finite numbers, strings without NUL or lone
surrogates (the rules of :mod:`twinedge.textinput`, under :data:`LIMITS`), and entries
of at most :data:`MAX_ENTRY_BYTES` once encoded.  Every
entry is validated before the first is appended, so a bad entry anywhere leaves the
ledger unchanged.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from twinedge import textinput
from twinedge.errors import TwinedgeError
from twinedge.ledger import merkle
from twinedge.ledger.audit import audit as run_audit
from twinedge.ledger.ledgerdir import LedgerDir
from twinedge.ledger.note import Verifier
from twinedge.ledger.settle import PriceTable, format_micro
from twinedge.ledger.settle import settle as run_settle
from twinedge.textinput import TextInputError

app = typer.Typer(
    name="ledger",
    help="Signed, witnessed, append-only logs of orchestration decisions (one per domain).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")
#: Largest input ``append`` reads (a file or stdin), in bytes.
MAX_INPUT_BYTES = 256 << 20
#: Largest entry ``append`` accepts, in bytes of canonical JSON.
MAX_ENTRY_BYTES = 1 << 20
#: Deepest nesting of arrays and objects accepted in an entry.
MAX_DEPTH = 64
#: What ``append`` reads: integers of at most 19 digits (larger ones are written as
#: strings), finite numbers, valid text without NUL, at most :data:`MAX_DEPTH` deep.
LIMITS = textinput.Limits(
    max_depth=MAX_DEPTH,
    max_int_digits=19,
    int_range=(-(2**63 - 1), 2**63 - 1),
    int_range_name="the 19-digit range ±(2**63 - 1); write larger integers as strings",
)
_MAX_MESSAGE = 500

DirArg = Annotated[Path, typer.Argument(help="Ledger directory (one sub-directory per domain).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(msg: str, code: int = 2) -> typer.Exit:
    msg = msg.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(msg) > _MAX_MESSAGE:
        msg = msg[: _MAX_MESSAGE - 3] + "..."
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn TwinedgeError / sqlite3.Error / OSError into one ``error:`` line, exit code 2."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
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
        except RecursionError:
            raise _fail("the input is nested too deeply to be read") from None
        except UnicodeError as exc:
            # only the decode/encode/translate subclasses carry a reason
            reason = getattr(exc, "reason", None) or exc
            raise _fail(f"the input is not valid Unicode text ({reason})") from None

    return wrapper


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


def _read_text(source: str) -> tuple[str, str]:
    """``(name, text)`` of a file or of stdin ('-'), bounded and decoded as UTF-8."""
    name = "stdin" if source == "-" else source
    try:
        if source != "-":
            if Path(source).is_dir():
                raise TwinedgeError(
                    f"{name} is a directory; give a file of entries or '-' for stdin"
                )
            return name, textinput.read_text(source, MAX_INPUT_BYTES)
        stream = getattr(sys.stdin, "buffer", None)
        raw = (
            stream.read(MAX_INPUT_BYTES + 1)
            if stream is not None
            else sys.stdin.read(MAX_INPUT_BYTES + 1).encode("utf-8", "surrogateescape")
        )
        if len(raw) > MAX_INPUT_BYTES:
            raise TwinedgeError(
                f"{name} is more than {MAX_INPUT_BYTES} bytes; append at most that much at a time"
            )
        return name, textinput.decode_utf8(raw)
    except TextInputError as exc:
        utf8 = "; entries must be UTF-8 JSON" if "not UTF-8" in exc.message else ""
        raise TwinedgeError(f"{name}: {exc.message}{utf8}") from None


def _parse_json(text: str, what: str, invalid: str) -> Any:
    """One JSON value under :data:`LIMITS`; ``invalid`` says what ``what`` should be."""
    try:
        return textinput.loads(text, LIMITS)
    except TextInputError as exc:
        if exc.line is not None:  # not JSON at all
            raise TwinedgeError(f"{what} is not {invalid} ({exc.message})") from None
        where = f"{exc.where()}: " if exc.path else ""
        raise TwinedgeError(f"{what}: {where}{exc.message}") from None


def _read_entries(source: str) -> Iterator[Any]:
    """Entries from a file or stdin ('-'): a JSON array, or one JSON object per line."""
    name, text = _read_text(source)
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = _parse_json(text, name, "valid JSON")
        if not isinstance(data, list):
            raise TwinedgeError(f"{name} is not a JSON array of entries")
        yield from data
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield _parse_json(
                line,
                f"{name} line {lineno}",
                "a JSON object; give one entry per line or a JSON array",
            )


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
    """Append entries (validated, canonicalised); each entry goes to its domain's log.

    Every entry is read and validated before the first is written, so bad input leaves
    the ledger unchanged; each domain's entries are appended in one transaction.
    """
    with LedgerDir.open(ledger_dir) as ld:
        if domain is not None:
            ld.domain_dir(domain)
        groups: dict[str, tuple[list[Any], list[int]]] = {}
        for i, e in enumerate(_read_entries(source)):
            dom = e.get("domain") if isinstance(e, dict) else None
            if domain is not None and isinstance(e, dict) and dom != domain:
                raise TwinedgeError(f"entry {i}: field 'domain' is {dom!r}, not {domain!r}")
            if not isinstance(dom, str):
                raise TwinedgeError(f"entry {i}: missing field 'domain' (a string)")
            g = groups.setdefault(dom, ([], []))
            g[0].append(e)
            g[1].append(i)
        encoded: dict[str, list[bytes]] = {}
        for dom, (es, pos) in groups.items():
            datas = ld.log(dom).encode_many(es, positions=pos)
            for i, data in zip(pos, datas, strict=True):
                if len(data) > MAX_ENTRY_BYTES:
                    raise TwinedgeError(
                        f"entry {i} is {len(data)} bytes; an entry is at most "
                        f"{MAX_ENTRY_BYTES} bytes (store large data elsewhere and log its hash)"
                    )
            encoded[dom] = datas
        total = {dom: ld.log(dom).append_encoded(datas) for dom, datas in encoded.items()}
    if not total:
        typer.echo("no entries to append")
    for d, r in sorted(total.items()):
        typer.echo(f"appended {len(r)} entries to {d} (indices {r.start}..{r.stop - 1})")


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
    """Prove witnessed checkpoints against the current logs; report any split view, rollback,
    replaced log, substituted key, replay, bad signature or failing proof (exit 1)."""
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
