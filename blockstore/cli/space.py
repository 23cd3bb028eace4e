"""Space and health commands: du, df, check, gc."""
from __future__ import annotations

import click

from ..errors import Corruption
from . import format as formatting
from .complete import tree_names
from .context import Ctx, output_options, pass_ctx
from .progress import spinner

_DU_KEYS = ("logical", "referenced", "exclusive", "shared", "files")
DU_WIDTH = 140           # `du` lines (eight columns) fit a terminal this wide
# How `du` makes a line fit: names down to 32 characters (a containerd
# snapshot's is a hash), then labels down to 40, then labels down to their
# header (--json has them whole).
_DU_CUTS = ((0, 32), (7, 40), (7, 0))
# containerd's key of a snapshot the snapshotter keeps (snapshotter/records.py)
# leads its labels, so that a cut line still shows it.
_DU_FIRST = ("blockstore.containerd.key", "blockstore.containerd.kind")


@click.command("du")
@click.argument("name", required=False, shell_complete=tree_names)
@output_options(exact=True)
@pass_ctx
def du_cmd(ctx: Ctx, name):
    """Space of one tree, or of every tree: logical (file sizes), referenced
    (pool bytes it reaches), exclusive (what removing it frees), shared (also
    reached from another tree; counted for each tree that reaches it), and
    its labels as `ls` shows them (containerd's snapshots: their keys).

    Cost: one tree: one walk of it, other trees are not scanned; every tree:
    one pass over the store that reads each shared subtree once.
    """
    store = ctx.store()
    recs = [store.info(name)] if name else sorted(store.list(), key=lambda r: r.name)
    usages = {name: store.usage(name)} if name else store.usage_all([r.name for r in recs])
    docs = []
    for r in recs:
        u = usages[r.name]
        docs.append({"name": r.name, "kind": r.kind, **{k: getattr(u, k) for k in _DU_KEYS},
                     "labels": dict(r.labels)})
    if ctx.json:
        formatting.emit_json(docs)
        return
    sz = lambda n: formatting.size(n, ctx.bytes)  # noqa: E731
    rows = [[d["name"], d["kind"], sz(d["logical"]), sz(d["referenced"]), sz(d["exclusive"]),
             sz(d["shared"]), str(d["files"]), formatting.labels_text(d["labels"], _DU_FIRST)] for d in docs]
    if rows:
        head = ["NAME", "KIND", "LOGICAL", "REFERENCED", "EXCLUSIVE", "SHARED", "FILES", "LABELS"]
        ctx.say(formatting.table(formatting.fit(rows, head, DU_WIDTH, _DU_CUTS), head,
                                 right={2, 3, 4, 5, 6}))


@click.command("df")
@output_options(exact=True)
@pass_ctx
def df_cmd(ctx: Ctx):
    """Pool totals: used, free, blocks referenced 2+ times, saved by dedup and by
    zero blocks, the data file's size on disk. O(1).

    "referenced 2+ times" is not du's SHARED: see docs/CLI.md.
    """
    store = ctx.store()
    d = store.df().as_dict()
    d["path"] = store.path
    d["checksum"] = store.checksum
    if ctx.json:
        formatting.emit_json(d)
        return
    sz = lambda n: formatting.size(n, ctx.bytes)  # noqa: E731
    lines = [("store", d["path"]), ("trees", str(d["trees"])),
             ("block size", sz(d["block_size"])), ("dedup", "on" if d["dedup"] else "off"),
             ("checksum", d["checksum"]),
             ("pool size", sz(d["total_bytes"])), ("used", sz(d["used_bytes"])),
             ("free", sz(d["free_bytes"])), ("pending free", sz(d["pending_bytes"])),
             ("referenced 2+ times", sz(d["multi_ref_bytes"])),
             ("saved by dedup", sz(d["dedup_saved_bytes"])),
             ("saved (zero blocks)", sz(d["zero_saved_bytes"])),
             ("data file on disk", sz(d["data_file_bytes"])),
             ("metadata on disk", sz(d["metadata_bytes"]))]
    w = max(len(k) for k, _ in lines)
    ctx.say("\n".join(f"{k + ':':<{w + 1}} {v}" for k, v in lines))


def report_json(rep) -> dict:
    return {"ok": rep.ok,
            "problems": [{"kind": p.kind, "message": p.message, "tree": p.tree,
                          "repairable": p.repairable} for p in rep.problems],
            "repaired": list(rep.repaired), "stats": dict(rep.stats),
            "findings": [{"kind": p.kind, "message": p.message, "tree": p.tree,
                          "repairable": p.repairable} for p in rep.findings]}


@click.command("check")
@click.option("--repair", is_flag=True, help="Fix what can be fixed, then check again.")
@click.option("--scrub", is_flag=True, help="Also read every data block and verify it.")
@output_options()
@pass_ctx
def check_cmd(ctx: Ctx, repair, scrub):
    """Verify every invariant of the store (fsck).  Exit code 8 when not ok.

    With --repair the result is the check run after the repair.  Findings
    (e.g. the working clone of an import whose process was killed) are
    reported but leave the store ok; gc or --repair removes them.
    """
    fatal = None
    try:
        store = ctx.store()
        with spinner(ctx, "checking the store"):
            rep = store.check(repair=repair, scrub=scrub)
            doc = report_json(rep)
            if repair and rep.repaired:
                again = store.check(scrub=scrub)
                doc = report_json(again)
                doc["repaired"] = list(rep.repaired)
                rep = again
    except Corruption as exc:
        # Damage that stops the store from opening or the check from reading it:
        # one problem, named, that no repair can fix.
        fatal = exc
        from ..api.store import CheckReport
        rep = CheckReport()
        rep.add("metadata-damaged", str(exc), repairable=False)
        doc = report_json(rep)
    if ctx.json:
        formatting.emit_json(doc)
    else:
        for r in doc["repaired"]:
            ctx.say(f"repaired: {r}")
        for p in rep.problems:
            ctx.say(f"problem: {p}")
        for p in rep.findings:
            ctx.say(f"finding: {p}")
        stats = ", ".join(f"{k} {v}" for k, v in sorted(doc["stats"].items()))
        ctx.say(("ok" if rep.ok else f"NOT OK: {len(rep.problems)} problems") +
                (f" ({stats})" if stats else ""))
    if fatal is not None:
        raise fatal
    if not rep.ok:
        raise Corruption(f"check found {len(rep.problems)} problems"
                         + ("" if repair else "; run `blockstore check --repair`"))


@click.command("gc")
@click.option("--no-trim", is_flag=True,
              help="Keep the free blocks allocated in the data file (no hole punching).")
@output_options(exact=True)
@pass_ctx
def gc_cmd(ctx: Ctx, no_trim):
    """Remove the working clones of killed imports, finish pending removals,
    return their space to the pool and the pool's free space to the file system."""
    store = ctx.store()
    with spinner(ctx, "collecting garbage"):
        d = store.gc(trim=not no_trim)
    d = dict(d, block_size=store.block_size)
    if ctx.json:
        formatting.emit_json(d)
        return
    bs = store.block_size
    for n in d["staging_removed"]:
        ctx.say(f"removed {n} (an unfinished import whose process is gone)")
    ctx.say(f"freed {d['nodes_freed']} nodes, released "
            f"{formatting.size(d['blocks_released'] * bs, ctx.bytes)}"
            f"{', pending ' + formatting.size(d['pending_blocks'] * bs, ctx.bytes) if d['pending_blocks'] else ''}"
            f"{', gave ' + formatting.size(d['trimmed_blocks'] * bs, ctx.bytes) + ' back to the file system' if d['trimmed_blocks'] else ''}")


COMMANDS = [du_cmd, df_cmd, check_cmd, gc_cmd]
