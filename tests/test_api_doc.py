"""docs/api.md's example, run as written: its fenced Python block in a fresh interpreter, in an empty folder with
its own store, on the embedded default model. Then what it recorded is read back from the store."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.store import Store

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) == 1, "docs/api.md holds one Python example"
    return blocks[0]


def test_the_example_uses_the_public_api_only():
    code = example()
    assert "import workbench\n" in code
    assert not re.search(r"from workbench\.|import workbench\.", code), "the example reaches past the public API"
    for name in ("train", "evaluate", "merge", "export", "compare"):
        assert f"workbench.{name}(" in code


@pytest.mark.slow
def test_the_example_runs_end_to_end(tmp_path, data_dir, default_ckpt):
    (tmp_path / "example.py").write_text(example(), encoding="utf-8")
    env = {**os.environ, "WB_STORE": str(tmp_path / "store"), "WB_DATA_DIR": str(data_dir)}
    res = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=30 * 60)
    assert res.returncode == 0, res.stderr[-4000:]
    print(res.stdout)
    assert f"adapter {tmp_path.resolve() / 'out' / 'adapter'}: 5 steps" in res.stdout

    store = Store(tmp_path / "store")
    runs = [store.load(m["run_id"]) for m in reversed(store.list_runs())]
    assert [r.manifest["kind"] for r in runs] == ["train", "eval", "eval", "merge", "export", "eval"]
    assert all(r.manifest["status"] == "ok" for r in runs)
    train, base, adapter, merge, export, shipped = runs
    assert train.manifest["command"] == "workbench.train"
    assert base.manifest["checkpoint"]["name"] == "default" and adapter.manifest["checkpoint"]["kind"] == "adapter"
    assert shipped.manifest["checkpoint"]["format"] == "gguf"
    [gguf] = list((tmp_path / "out" / "gguf").glob("*-Q8_0.gguf"))
    assert export.metric(gguf.name, "size_bytes")["value"] == gguf.stat().st_size
    assert merge.metric("merge_check", "argmax_agreement")["value"] > 0.99
    assert not [p for p in (tmp_path / "out").iterdir() if ".partial-" in p.name]
