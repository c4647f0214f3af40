"""What the pages say about a SUT: its name, its dense base and compression, its size."""

from typing import Any

from modelbench.reports.formatting import num


def sut_facts(uid: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What a leaderboard row says about a SUT, from registry or compression metadata.

    `compression` is a chain string in registry entries and a summary dict for SUTs compressed on
    the fly; sparsity and parameter counts may sit at the top level or inside it.
    """
    meta = metadata or {}
    compression = meta.get("compression")
    details = compression if isinstance(compression, dict) else meta.get("compression_metadata")
    details = details if isinstance(details, dict) else {}
    label = compression if isinstance(compression, str) else meta.get("chain") or details.get("chain")
    sparsity = num(meta.get("sparsity"))
    if sparsity is None:
        sparsity = num(details.get("sparsity"))
    params = num(meta.get("params"))
    nonzero = num(details.get("nonzero_params_after"))
    if params is None:
        params = num(details.get("params_after"))
    params_before = num(details.get("params_before"))
    if params_before is None:
        params_before = num(meta.get("params_dense"))
    return {
        "uid": uid,
        "name": str(meta.get("display_name") or uid),
        "dense_base": meta.get("dense_base") or None,
        "compression": str(label) if label else None,
        "sparsity": sparsity,
        "params": params,
        "nonzero_params": nonzero,
        "params_before": params_before,
        "perplexity": num(details.get("perplexity", meta.get("perplexity"))),
        "dense_perplexity": num(details.get("dense_perplexity", meta.get("dense_perplexity"))),
        "paper": meta.get("paper"),
    }
