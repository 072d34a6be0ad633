"""Real tokenizers for the template tests: the ggml-vocab-*.gguf vocabularies llama.cpp's sdist ships
(vendor/llama.cpp/models, read from the archive scripts/setup.sh downloads; never copied into the repo), each as a
transformers tokenizer (converted from the GGUF's tokenizer.ggml.* fields by transformers' gguf_file= reader,
cached as tokenizer.json under WB_HOME so later sessions load it in a second) and as llama.cpp's own tokenizer of
the same file. Templates are swapped onto the family's real vocabulary, so its special tokens are single tokens."""

import os
import tarfile
from functools import cache
from pathlib import Path

import pytest

from workbench.runtimes.llamacpp.tools import sdist_cache
from workbench.store.files import staged_folder
from workbench.system.home import home

MODELS = "/vendor/llama.cpp/models/"


def sdist() -> Path:
    archives = sorted(sdist_cache().glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        pytest.skip(f"needs the llama-cpp-python sdist in {sdist_cache()} (scripts/setup.sh downloads it)")
    return archives[-1]


def corpus_templates() -> dict[str, str]:
    """The chat templates llama.cpp ships (models/templates/*.jinja), by file stem."""
    templates = {}
    with tarfile.open(sdist()) as tar:
        for member in tar.getmembers():
            if MODELS + "templates/" in member.name and member.name.endswith(".jinja"):
                templates[Path(member.name).stem] = tar.extractfile(member).read().decode("utf-8")
    return templates


# Llama 3.1's vocabulary is Llama 3's (llama-bpe) with three reserved special tokens given names; Qwen 3's is
# Qwen 2's with its tool and reasoning tags where Qwen 2 has padding.
RENAMED = {
    "llama3.1": ("llama-bpe", {128004: "<|finetune_right_pad_id|>", 128008: "<|eom_id|>", 128010: "<|python_tag|>"}),
    "qwen3": ("qwen2", {151657: "<tool_call>", 151658: "</tool_call>", 151665: "<tool_response>",
                        151666: "</tool_response>", 151667: "<think>", 151668: "</think>"}),
}


def vocab_file(name: str) -> Path:
    """ggml-vocab-NAME.gguf extracted once into WB_HOME (a RENAMED one written from its source by gguf)."""
    if name in RENAMED:
        return _renamed_gguf(name)
    archive = sdist()
    folder = home() / "vocab-bench" / archive.name.removesuffix(".tar.gz")
    path = folder / f"ggml-vocab-{name}.gguf"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(MODELS + path.name))
            partial = _partial(path)
            partial.write_bytes(tar.extractfile(member).read())
            partial.replace(path)
    return path


def _partial(path: Path) -> Path:
    """Where this process writes `path` before renaming it there: its own name, since test workers share the cache
    (the rename of a whole file is atomic; the last writer's identical file wins)."""
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def _renamed_gguf(name: str) -> Path:
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    source, names = RENAMED[name]
    src = vocab_file(source)
    path = src.parent / f"ggml-vocab-{name}.gguf"
    if path.exists():
        return path
    reader = gguf.GGUFReader(src)
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [str(bytes(field.parts[i]), "utf-8") for i in field.data]
    for i, text in names.items():
        tokens[i] = text
    arch = reader.fields["general.architecture"]
    partial = _partial(path)
    writer = gguf.GGUFWriter(str(partial), arch=str(bytes(arch.parts[arch.data[0]]), "utf-8"),
                             endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {"tokenizer.ggml.tokens": MetadataDetails(
        gguf.GGUFValueType.ARRAY, tokens, sub_type=gguf.GGUFValueType.STRING)}, [])
    partial.replace(path)
    return path


@cache
def hf_tokenizer(name: str):
    """The vocabulary as a transformers tokenizer (converted once from the GGUF, then loaded from its cache; one
    object per session: callers set its chat_template)."""
    from transformers import AutoTokenizer

    gguf = vocab_file(name)
    cached = gguf.parent / f"hf-{name}"
    if not (cached / "tokenizer_config.json").exists():
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with staged_folder(cached, keep_existing=True) as build:  # test workers may convert it at once
            tok.save_pretrained(str(build))
    return AutoTokenizer.from_pretrained(str(cached))


@cache
def llama_tokenizer(name: str):
    """llama.cpp's tokenizer of the vocabulary (special tokens parsed, no BOS added), loaded once per session."""
    from workbench.runtimes.llamacpp import model as llamacpp

    return llamacpp.gguf_tokenizer(vocab_file(name))


@cache
def vocab_metadata(name: str) -> dict:
    """The file's EOS id and add_bos_token, from llama.cpp's vocabulary-only load (the gguf package's reader takes
    seconds over a 128k-token vocabulary)."""
    from llama_cpp import Llama

    meta = Llama(model_path=str(vocab_file(name)), vocab_only=True, verbose=False).metadata
    return {"eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
            "add_bos_token": meta.get("tokenizer.ggml.add_bos_token", "false") == "true"}
