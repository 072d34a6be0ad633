"""`wb eval --matrix CKPT --suite S`: the matrix's table (or --json's object) and its end: non-zero when a member
failed (workbench.eval.matrix runs it)."""

from workbench.cli.output import emit_json, out
from workbench.system.console import info, warn


def print_matrix(result, *, json_out: bool, wide: bool = False) -> None:
    from workbench.eval.matrix import matrix_table

    if json_out:
        emit_json(result.to_dict())
    else:
        out.print(matrix_table(f"matrix {result.run.run_id}: {result.checkpoint.name} on suite {result.suite}",
                               result.members, result.runs, result.comparisons, wide=wide))
        differ = {m.name: c.setting_differences for m in result.members
                  if (c := result.comparisons.get(m.run_id)) and c.setting_differences}
        for name, diffs in differ.items():
            warn(f"{name}: settings differ from CKPT's run: {'; '.join(diffs)}")
        reused = sum(m.reused for m in result.members)
        info(f"matrix {result.run.run_id} and its {len(result.runs) - reused} new eval runs recorded in "
             f"{result.store_root}" + (f" ({reused} identical runs reused)" if reused else ""))
    failure = result.failure()
    if failure is not None:
        raise failure
