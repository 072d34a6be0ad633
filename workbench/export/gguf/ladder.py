"""The quant ladder: every quant type exported and measured side by side, and the smallest file whose mean
KL divergence from the source stays within a budget recommended."""

DEFAULT_KLD_BUDGET = 0.05  # nats; llama.cpp's Llama-3-8B Q4_K_M sits at 0.031, small models lose more per bit


def ladder_rows(summary: dict) -> list[dict]:
    checks = (summary.get("verify") or {}).get("files", {})
    rows = []
    for f in summary["files"]:
        v = checks.get(f["path"].rsplit("/", 1)[-1], {})
        rows.append({"quant": f["quant"], "file": f["path"], "size_bytes": f["size_bytes"],
                     "perplexity": v.get("perplexity"), "source_perplexity": v.get("source_perplexity"),
                     "mean_kl": v.get("mean_kl"), "top1_agreement": v.get("top1_agreement"),
                     "tokens_per_second": v.get("tokens_per_second"),
                     "smoke_passed": (v.get("smoke") or {}).get("passed")})
    return rows


def recommend(rows: list[dict], budget: float) -> dict:
    """The smallest file with mean KL <= budget (None when none is). Smoke-chat failures are shown beside it,
    not folded in: a small model's greedy near-ties can flip one chat at any quant type."""
    within = [r for r in rows if r["mean_kl"] is not None and r["mean_kl"] <= budget]
    best = min(within, key=lambda r: r["size_bytes"]) if within else None
    return {"kld_budget": budget, "rows": rows, "within_budget": [r["quant"] for r in within],
            "recommended": best["quant"] if best else None,
            "recommended_file": best["file"] if best else None}
