"""Model-model merges (SLERP, TIES, DARE, task arithmetic, passthrough, ...) through mergekit, its YAML as is.

The config is mergekit's own: validated by its pydantic model (MergeConfiguration) and run by its Python API
(run_merge) on the CPU. The one thing wb adds is where the models are: a model reference that is not a local
folder goes through wb's resolver (`default`, a hub id in the offline cache), and the config mergekit runs names
that folder instead; nothing else in it changes. Before any weights load, every referenced model's safetensors
headers are read: a tensor two models both have must have one shape; each slice's layer range must lie within its
model, and the parameters and dtypes must be what mergekit will accept, so none of these fails mid-merge."""

import gc
import hashlib
import shutil
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput
from workbench.store.files import staged_folder
from workbench.system.failures import disk_full_as
from workbench.system.user_files import read_text

HOW = "mergekit"
_REF_KEYS = ("model", "base_model", "tokenizer_source")


class MergekitConfig:
    """A mergekit YAML, read, its models located and validated by mergekit."""

    def __init__(self, path: Path):
        from workbench.config import parse_yaml_mapping

        self.path = Path(path)
        self.text = read_text(self.path, "a mergekit YAML")
        self.sha = hashlib.sha256(self.text.encode()).hexdigest()
        raw = parse_yaml_mapping(self.text, self.path)
        self.located: dict[str, str] = {}  # the config's reference -> the local folder mergekit is given
        self.raw = self._locate(raw, ())
        self.config = self._validate()

    def _locate(self, node, where: tuple):
        if isinstance(node, dict):
            return {k: (self._local(v, where + (k,)) if k in _REF_KEYS and isinstance(v, str)
                        else self._locate(v, where + (k,))) for k, v in node.items()}
        if isinstance(node, list):
            return [self._locate(v, where + (i,)) for i, v in enumerate(node)]
        return node

    def _local(self, ref: str, where: tuple) -> str:
        """'MODEL[@REVISION][+LORA]' with MODEL (and LORA) made local folders through wb's resolver."""
        if where[-1] == "tokenizer_source" and ref in ("union", "base"):
            return ref
        parts = [self._folder(part, where) for part in ref.split("+", 1)]
        return "+".join(parts)

    def _folder(self, ref: str, where: tuple) -> str:
        from workbench.checkpoints.resolve import resolve_checkpoint

        if Path(ref).expanduser().is_dir():
            return ref
        if ref not in self.located:
            try:
                self.located[ref] = str(resolve_checkpoint(ref, with_sha=False).path)
            except BadInput as exc:
                raise BadInput(f"mergekit config '{self.path}': {_field(where)}: {exc}") from None
        return self.located[ref]

    def _validate(self):
        from mergekit.config import MergeConfiguration
        from mergekit.merge_methods import registry
        from pydantic import ValidationError

        try:
            config = MergeConfiguration.model_validate(self.raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise BadInput(f"mergekit config '{self.path}': {_field(err['loc']) or '(top level)'}: "
                           f"{err['msg']}") from None
        except (ValueError, RuntimeError) as exc:  # mergekit's own validators raise these
            raise BadInput(f"mergekit config '{self.path}': {str(exc).strip().splitlines()[0]}") from None
        try:
            method = registry.get(config.merge_method)
        except RuntimeError:
            names = ", ".join(sorted(m.spec.name for m in registry.registered_methods()))
            raise BadInput(f"mergekit config '{self.path}': merge_method: '{config.merge_method}' is not one of "
                           f"mergekit's ({names})") from None
        self._check_dtypes(config)
        self._check_parameters(config, method.spec)
        return config

    def _check_dtypes(self, config) -> None:
        """mergekit reads `dtype` and `out_dtype` only once the merge runs: checked now, by its own parser."""
        from mergekit.common import dtype_from_name

        for key in ("dtype", "out_dtype"):
            try:
                dtype_from_name(getattr(config, key))
            except RuntimeError as exc:
                raise BadInput(f"mergekit config '{self.path}': {key}: {exc}") from None

    def _check_parameters(self, config, spec) -> None:
        """Every parameter setting validated as mergekit's merge method will (its ParameterSpec types), now rather
        than while planning tensors inside the run, and finite (a weight of .nan merges a model of NaNs)."""
        from mergekit.config import evaluate_setting
        from pydantic import ValidationError

        from workbench.config import finite_values

        known = {p.name: p for p in spec.parameters}
        for where, settings in _parameter_settings(config):
            for name, setting in (settings or {}).items():
                field = f"{where}parameters.{name}"
                try:
                    finite_values(setting, field)
                    if name in known:
                        evaluate_setting("<config>", setting, 0, validate=known[name].validate)
                except ValidationError as exc:
                    raise BadInput(f"mergekit config '{self.path}': {field}: {setting!r}: "
                                   f"{exc.errors()[0]['msg']} ({config.merge_method})") from None
                except ValueError as exc:
                    raise BadInput(f"mergekit config '{self.path}': {exc}") from None

    def model_folders(self) -> list[Path]:
        """Every model the config references (LoRA references by their base model), in a stable order."""
        refs = sorted({str(r.model.path) for r in self.config.referenced_models()})
        return [Path(r).expanduser() for r in refs]


def check_models(cfg: MergekitConfig) -> list[Checkpoint]:
    """Each referenced model resolves (its files checked) and, from the safetensors headers, every tensor name
    two models share has one shape: models of different architectures or sizes are refused before weights load."""
    from workbench.checkpoints.lora_plan import model_shards
    from workbench.checkpoints.resolve import resolve_checked

    models, shapes = [], {}
    for folder in cfg.model_folders():
        if not folder.is_dir():
            raise BadInput(f"mergekit config '{cfg.path}': model '{folder}' is not a folder (mergekit reads local "
                           "or hub models; wb runs it offline)")
        ckpt = resolve_checked(str(folder))
        if ckpt.kind not in ("base", "merged"):
            raise BadInput(f"mergekit config '{cfg.path}': '{folder}' is a {ckpt.kind} checkpoint, not a model")
        shards, _ = model_shards(folder)
        if not shards:
            raise BadInput(f"mergekit config '{cfg.path}': model '{folder}' has no .safetensors weights")
        for shard in shards:
            for name, entry in shard.entries.items():
                seen = shapes.setdefault(name, (tuple(entry.shape), folder))
                if seen[0] != tuple(entry.shape):
                    raise BadInput(f"mergekit config '{cfg.path}': '{name}' is {_shape(entry.shape)} in '{folder}' "
                                   f"but {_shape(seen[0])} in '{seen[1]}'; merge models of one architecture")
        models.append(ckpt)
    _check_layer_ranges(cfg)
    return models


def merge_with_mergekit(cfg: MergekitConfig, out_dir: Path, *, seed: int = 0,
                        parents: list[Checkpoint] | None = None) -> tuple[Checkpoint, dict]:
    """Run the merge into a staging folder, verify it (loads, finite probe logits, probe perplexity beside each
    parent's), record the lineage, publish."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from workbench.merge.verify import parent_perplexity, verify_folder
    from workbench.system.output_paths import check_new_folder

    check_new_folder(out_dir)
    parents = parents if parents is not None else check_models(cfg)
    with staged_folder(out_dir) as build:
        build.mkdir()
        with disk_full_as(out_dir):
            run_merge(cfg.config, str(build), options=MergeOptions(device="cpu", copy_tokenizer=True, quiet=True,
                                                                   random_seed=seed, lazy_unpickle=False),
                      config_source=cfg.text)
            if not (build / "tokenizer_config.json").exists():  # mergekit copies the base model's, when it has one
                _copy_tokenizer(parents[0], build)
        gc.collect()
        merged_ref = Checkpoint(path=build, name="merged", kind="merged", format="hf")
        verified = verify_folder(build, merged_ref)
        perplexities = [{"name": p.name, "path": str(p.path), "kind": p.kind,
                         "probe_perplexity": parent_perplexity(p)} for p in parents]
        ckpt = Checkpoint(
            path=build, name=f"{cfg.path.stem}-merged", kind="merged", format="hf", sha=weights_sha(build),
            parent={"how": HOW, "merge_method": cfg.config.merge_method, "config_path": str(cfg.path.resolve()),
                    "config_sha": cfg.sha, "config": cfg.text, "located": cfg.located, "seed": seed,
                    "models": [{"name": p.name, "path": str(p.path), "sha": p.sha} for p in parents],
                    "verified": verified, "parents_probe_perplexity": perplexities},
        )
        ckpt.save_meta()
    ckpt.path = out_dir.resolve()
    return ckpt, {"verified": verified, "parents": perplexities}


def _parameter_settings(config):
    """(where, parameters mapping) for every place a mergekit config sets parameters."""
    holders = [("", config)] + [(f"modules.{name}.", m) for name, m in (config.modules or {}).items()]
    for prefix, holder in holders:
        yield prefix, holder.parameters
        for i, model in enumerate(holder.models or []):
            yield f"{prefix}models.{i}.", model.parameters
        for i, piece in enumerate(holder.slices or []):
            yield f"{prefix}slices.{i}.", piece.parameters
            for j, source in enumerate(piece.sources):
                yield f"{prefix}slices.{i}.sources.{j}.", source.parameters


def _check_layer_ranges(cfg: MergekitConfig) -> None:
    """Each slice's layer_range lies within its model's layers (mergekit finds out tensor by tensor, mid-merge)."""
    from transformers import AutoConfig

    holders = [("", cfg.config)] + [(f"modules.{n}.", m) for n, m in (cfg.config.modules or {}).items()]
    for prefix, holder in holders:
        for i, piece in enumerate(holder.slices or []):
            for j, source in enumerate(piece.sources):
                start, end = source.layer_range
                layers = AutoConfig.from_pretrained(str(source.model.model.path)).num_hidden_layers
                if not 0 <= start < end <= layers:
                    raise BadInput(f"mergekit config '{cfg.path}': {prefix}slices.{i}.sources.{j}.layer_range: "
                                   f"[{start}, {end}] is not within '{source.model.model.path}', which has "
                                   f"{layers} layers (a range is [first, last + 1], 0 <= first < last + 1 <= {layers})")


def _copy_tokenizer(source: Checkpoint, out: Path) -> None:
    from workbench.checkpoints.checkpoint import TOKENIZER_FILES

    for name in TOKENIZER_FILES:
        if (Path(source.path) / name).is_file():
            shutil.copyfile(Path(source.path) / name, out / name)


def _field(loc) -> str:
    return ".".join(str(part) for part in loc)


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"
