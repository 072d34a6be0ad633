"""Lineage: which checkpoint was made from which, read from the run records alone. A merge run's `output`, an
export run's `outputs` and the `parent` every checkpoint record carries (whichever shape its producer wrote: an
adapter and its base, several adapters, mergekit's models, an exported file's source) make one graph of
checkpoints keyed by weights sha. The dashboard's Lineage page draws it; `wb eval --matrix` walks it."""

from pathlib import Path

# Order within a lineage column: bases, then adapters, merged models, exported files.
KIND_ORDER = {"base": 0, "adapter": 1, "merged": 2, "quantized": 3}


def checkpoint_key(c: dict) -> str:
    return c.get("sha") or c.get("path") or c.get("name") or "?"



def ckpt(manifest: dict) -> dict:
    return manifest.get("checkpoint") or {}


def during_training(manifest: dict) -> bool:
    """An eval run of the adapter being trained (eval_during_training): shown on the Training page, not as a
    checkpoint of its own on the leaderboard or in the lineage."""
    return bool((manifest.get("lineage") or {}).get("train_run"))


def _parent_links(c: dict) -> list[tuple[str, dict]]:
    """(parent key, parent node) per parent of a checkpoint: several for a merge of several adapters
    (`parent.adapters`) or a mergekit merge (`parent.models`), else the one _parent_link finds."""
    p = c.get("parent") or {}
    many = [(entry, "adapter") for entry in p.get("adapters") or []] + [(entry, None) for entry in p.get("models") or []]
    links = [(e["sha"], {"name": e.get("name") or Path(e.get("path") or "?").name, "format": e.get("format"),
                         "kind": kind or e.get("kind") or "source", "sha": e["sha"], "path": e.get("path")})
             for e, kind in many if isinstance(e, dict) and e.get("sha")]
    if links:
        return links
    one = _parent_link(c)
    return [one] if one else []


def _parent_link(c: dict) -> tuple[str, dict] | None:
    """(parent key, parent node) from a checkpoint's lineage record, whichever shape its producer wrote."""
    p = c.get("parent") or {}
    for sha_key, name_key, kind in (("adapter_sha", "adapter", "adapter"), ("base_sha", "base", "base"),
                                    ("sha", "name", None)):
        if p.get(sha_key):
            path = p.get("adapter_path") if sha_key == "adapter_sha" else p.get("base_path") or p.get("path")
            name = p.get(name_key) or (Path(path).name if path else p[sha_key][:12])
            fmt = p.get("format") or ("peft" if kind == "adapter" else None)
            return p[sha_key], {"name": name, "kind": kind or p.get("kind") or "source", "format": fmt,
                                "sha": p[sha_key], "path": path}
    return None


def lineage(manifests: list[dict]) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
    """Checkpoints every run mentions (nodes, keyed by sha) and how each was made from another (edges)."""
    nodes: dict[str, dict] = {}
    edges: dict[tuple[str, str], str] = {}

    def add(c: dict, run: dict | None) -> str:
        key = checkpoint_key(c)
        node = nodes.setdefault(key, {"key": key, "name": c.get("name"), "kind": c.get("kind"),
                                      "format": c.get("format"), "sha": c.get("sha"), "path": c.get("path"),
                                      "runs": []})
        for field in ("name", "kind", "format", "path"):
            node[field] = node[field] or c.get(field)
        if run is not None and run["run_id"] not in node["runs"]:
            node["runs"].append(run["run_id"])
        for link in _parent_links(c):
            if link[0] == key:
                continue
            parent_key = add(link[1], None)
            p = c.get("parent") or {}
            how = p.get("how") or p.get("method") or ""
            if p.get("how") and p.get("merge_method" if p.get("how") == "mergekit" else "method"):
                how = f"{p['how']} {p.get('merge_method') or p.get('method')}"
            label = f"{how} {p['quant']}".strip() if p.get("quant") else how
            if not edges.get((parent_key, key)):
                edges[(parent_key, key)] = label
        return key

    for m in reversed(manifests):  # oldest first: a checkpoint's producer labels its edge before its consumers
        if not m.get("checkpoint") or during_training(m):
            continue
        source = add(ckpt(m), m)
        if m["kind"] == "merge" and m.get("output"):
            add(m["output"], m)
        for out in m.get("outputs") or []:
            name = Path(out["path"]).stem
            node = {"name": name, "kind": "quantized", "format": m.get("format"), "sha": out.get("sha"),
                    "path": out["path"], "parent": {"sha": source, "name": ckpt(m).get("name"),
                                                    "quant": out.get("quant"), "how": f"{m.get('format')} export"}}
            add(node, m)
    return nodes, sorted((src, dst, how) for (src, dst), how in edges.items())
