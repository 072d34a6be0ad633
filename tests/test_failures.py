"""workbench.system.failures on the real exceptions the libraries raise: the net below the up-front checks."""

import errno
import json

import pytest
from hostile_support import other_base_dir, tiny_adapter_dir, truncated  # noqa: F401  (fixtures)

from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.failures import translate


def test_cut_safetensors_from_safetensors_itself(tmp_path, tiny_model_dir):
    from safetensors import safe_open

    cut = tmp_path / "model.safetensors"
    cut.write_bytes(truncated(tiny_model_dir / "model.safetensors", 0.5))
    with pytest.raises(Exception) as raised:
        with safe_open(str(cut), "pt") as fh:
            list(fh.keys())
    error = translate(raised.value)
    assert isinstance(error, BadInput) and "safetensors" in str(error) and "\n" not in str(error)


def test_unknown_model_type_from_transformers(tmp_path, tiny_model_dir):
    from transformers import AutoConfig

    config = json.loads((tiny_model_dir / "config.json").read_text()) | {"model_type": "wbcustom"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception) as raised:
        AutoConfig.from_pretrained(str(tmp_path))
    error = translate(raised.value)
    assert isinstance(error, BadInput) and "transformers does not know" in str(error)


def test_peft_size_mismatch(tiny_adapter_dir, other_base_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(other_base_dir))
    with pytest.raises(Exception) as raised:
        PeftModel.from_pretrained(base, str(tiny_adapter_dir))
    error = translate(raised.value)
    assert isinstance(error, BadInput) and "does not fit its base" in str(error) and "\n" not in str(error)


@pytest.mark.parametrize("code, kind, needle", [
    (errno.ENOSPC, EnvironmentProblem, "no space left on the device of /x/f"),
    (errno.EACCES, BadInput, "/x/f: permission denied"),
    (errno.EROFS, BadInput, "/x/f: read-only file system"),
    (errno.EISDIR, BadInput, "/x/f: is a directory"),
])
def test_os_errors_name_the_file(code, kind, needle):
    error = translate(OSError(code, "msg", "/x/f"))
    assert isinstance(error, kind) and needle in str(error)


def test_an_unknown_exception_is_left_alone():
    assert translate(ZeroDivisionError("a bug in wb")) is None


def test_a_full_disk_inside_safetensors_is_no_space_not_damage(tmp_path, tiny_model_dir):
    """safetensors wraps ENOSPC in its own error: still 'no space left', not 'a damaged file'."""
    import torch
    from hostile_support import SmallDisk
    from safetensors.torch import save_file

    disk = SmallDisk(tmp_path / "disk", "64k")
    try:
        with pytest.raises(Exception) as raised:
            save_file({"w": torch.zeros(64, 1024)}, str(disk.path / "model.safetensors"))
    finally:
        disk.close()
    error = translate(raised.value)
    assert isinstance(error, EnvironmentProblem) and "no space left" in str(error), repr(raised.value)
