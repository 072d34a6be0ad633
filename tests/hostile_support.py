"""What the hostile-input tests share: bad inputs built in tmp_path, the CLI run in-process through its real edge
(workbench.cli.main.main, what `wb` runs), and the contract every bad input must meet:

- the exact exit code;
- stderr is one line naming the file or field (two for a usage error: the usage, then the error);
- no traceback, nothing on stdout;
- nothing new or changed anywhere under tmp_path, which holds the inputs, the store, the -o folder, WB_HOME,
  HOME and the process's temporary folder.
"""

import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

JUNK_BYTES = bytes(range(256)) * 8  # not UTF-8 from its second half on, as `head -c 2000 /dev/urandom` is


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list, capsys) -> Result:
    """`wb ARGV` in this process; the environment and tempfile's folder are put back afterwards."""
    from workbench.cli.main import main

    saved_env, saved_tmp = dict(os.environ), tempfile.tempdir
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        tempfile.tempdir = saved_tmp
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root with its size and modification time (symlinks not followed)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            seen[str(path.relative_to(root))] = (st.st_size if not path.is_dir() else 0, st.st_mtime_ns)
    return seen


def assert_refused(res: Result, code: int, needles: tuple[str, ...], before: dict, root: Path) -> None:
    assert res.code == code, (res.code, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == (2 if code == 2 else 1), res.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    assert res.stdout == "", res.stdout
    after = snapshot(root)
    assert after == before, {"new or changed": sorted(set(after.items()) ^ set(before.items()))}


class Workspace:
    """A tmp_path laid out as a user's: inputs/, store/, home/ (WB_HOME), user-home/ (HOME), sys-tmp/ (tempfile's
    folder)."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.inputs = root / "inputs"
        self.store = root / "store"
        self.home = root / "home"
        for folder in (self.inputs, self.home, root / "sys-tmp", root / "user-home"):
            folder.mkdir()
        monkeypatch.setenv("WB_STORE", str(self.store))
        monkeypatch.setenv("WB_HOME", str(self.home))
        monkeypatch.setenv("HOME", str(root / "user-home"))  # ~/.cache and the like: watched too
        monkeypatch.setattr(tempfile, "tempdir", str(root / "sys-tmp"))

    def readonly(self) -> Path:
        """A read-only folder (a read-only tmpfs), unmounted when the test ends."""
        if not hasattr(self, "_ro"):
            self._ro = ReadOnlyFolder(self.root / "ro")
        return self._ro.path

    def close(self) -> None:
        if hasattr(self, "_ro"):
            self._ro.close()

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def suite(self, name: str = "suite.yaml", rows: str | bytes | None = None, extra: str = "") -> Path:
        """A small valid suite (one task, three rows) unless told otherwise."""
        data = name.replace(".yaml", ".jsonl")
        self.file(data, rows if rows is not None else "".join(
            json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(3)))
        return self.file(name, f"name: tiny\ntasks:\n  - name: say\n    data: {data}\n"
                               f"    generation: {{max_new_tokens: 4}}\n    scorers: [{{type: exact}}]\n{extra}")

    def variant(self, source: Path, name: str, **files: str | bytes | None) -> Path:
        """A copy of model/adapter folder `source` (files linked, not copied) with some files replaced
        (name=content) or removed (name=None). Keyword names use '__' for '.', e.g. config__json."""
        out = self.inputs / name
        out.mkdir()
        for f in source.iterdir():
            (out / f.name).symlink_to(f.resolve())
        for key, content in files.items():
            target = out / key.replace("__", ".")
            target.unlink(missing_ok=True)
            if content is not None:
                target.write_bytes(content if isinstance(content, bytes) else content.encode())
        return out

    def recipe(self, name: str = "recipe.yaml", base: str = "default", rows: str | bytes | None = None,
               extra: str = "") -> Path:
        data = name.replace(".yaml", ".jsonl")
        if rows is not False:
            self.file(data, rows if rows is not None else "".join(
                json.dumps({"prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(4)))
        return self.file(name, f"name: tiny-lora\nbase: {base}\ntrain_data: {data}\n"
                               f"training: {{max_steps: 1, batch_size: 2}}\n{extra}")


def truncated(path: Path, keep: float | int) -> bytes:
    data = path.read_bytes()
    return data[: keep if isinstance(keep, int) else int(len(data) * keep)]


def gguf_header(tensor_elems: int = 4096) -> bytes:
    """A GGUF v3 file with one F32 tensor and none of its data: right magic, cut after the header."""
    def string(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + string("general.architecture") + struct.pack("<I", 8) + string("llama")
    head += string("t") + struct.pack("<I", 1) + struct.pack("<Q", tensor_elems) + struct.pack("<IQ", 0, 0)
    return head + b"\0" * (-len(head) % 32) + b"\0" * 64


class ReadOnlyFolder:
    """A read-only tmpfs mounted at `path` (root ignores permission bits, not a read-only mount)."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"needs a read-only mount (root with CAP_SYS_ADMIN): mount said {res.stderr.strip()}")

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


class SmallDisk:
    """A tmpfs of `size` mounted at `path`: writes past it fail with ENOSPC."""

    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"needs a tmpfs mount (root with CAP_SYS_ADMIN): mount said {res.stderr.strip()}")

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=False)
    return dst


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir):
    """A LoRA adapter (non-zero B, so merging changes the logits) on the tiny Llama, its base named by path."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(model, lora).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def other_base_dir(tmp_path_factory, tiny_model_dir):
    """A base of other shapes (hidden size 32) than the one tiny_adapter_dir was trained on."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((tiny_model_dir / "config.json").read_text())
    torch.manual_seed(0)
    small = LlamaConfig(vocab_size=config["vocab_size"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("other-base")
    LlamaForCausalLM(small).save_pretrained(str(out))
    return out


def adapter_naming(ws: Workspace, adapter: Path, name: str, base: str, *, meta: str | None = None) -> Path:
    """A copy of `adapter` whose adapter_config.json names `base`; `meta`: a wb_checkpoint.json beside it."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = base
    files = {"adapter_config__json": json.dumps(cfg)}
    if meta is not None:
        files["wb_checkpoint__json"] = meta
    return ws.variant(adapter, name, **files)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path, monkeypatch)
    yield workspace
    workspace.close()


def check_case(case, ws, request, capsys, *, data_cache: bool = False) -> None:
    """Build the case's input, run it, and hold it to the contract (see the module docstring). data_cache: the
    case reads lm-eval task data, whose Arrow copies `datasets` may cache under WB_HOME/hf-datasets (a cache of
    what was read, not a record of the refused command)."""
    build, code, needles = case
    argv = build(ws, request.getfixturevalue)
    before = snapshot(ws.root)
    res = run_cli(argv, capsys)
    if data_cache:
        import shutil

        shutil.rmtree(ws.home / "hf-datasets", ignore_errors=True)
        os.utime(ws.home, ns=(before["home"][1], before["home"][1]))
    assert_refused(res, code, tuple(n(ws) if callable(n) else n for n in needles), before, ws.root)
