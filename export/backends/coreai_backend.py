"""Core AI backend: an ``.aimodel`` folder (Apple Core AI, iOS/iPadOS/macOS 27) in fp32, fp16 or W8A8.

Conversion: ``torch.export`` + ``coreai_torch.get_decomp_table()``, then coreai-torch's ``TorchConverter``
in release mode (operation ids only: no source paths or stack traces in the bytecode), input and output
named ``image`` and ``logits``, one function, ``main``. fp16 is coreai-opt's ``cast_fp32_to_fp16`` on the
exported program (the input and output become float16). int8 is W8A8 by coreai-opt
(``mvit.export.backends.coreai_w8a8``) with mvit's int8 plan.

The same inputs give the same bytes: coreai-core names composite graphs (``layer_norm_<5 letters>``)
with ``secrets.choice``, which ``_seeded_names`` replaces by a seeded generator while converting, and
the asset's ``creationDate`` is left out of ``metadata.json``.

Metadata: model_meta (a JSON string) under ``creatorDefinedMetadata.mvit`` of the asset's own ``metadata.json`` (an app
reads labels and the preprocessing contract from the asset), plus the usual sidecars.

Numerics: coreai-core's bundled CPU runtime (``AIModelAsset.load(path).executable()``), which runs on
Linux; not a device measurement, and too slow here for latency (``can_time``). Linux cannot build image
inputs, tune for a device, pick compute units or precompile ``.aimodelc``.

Core AI is an optional extra (``pip install 'mvit[coreai]'``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import mvit

from ..base import Capabilities, ExportError, ExportJob, IOSpec, TensorSpec
from ..metadata import to_json_bytes
from ..runner import Runner
from ..wrappers import input_graph
from .coreai_w8a8 import quantize

FORMAT = "coreai"
SUFFIX = ".aimodel"
RUNTIME = "Core AI CPU runtime (coreai-core, Linux)"
PRECISIONS = ("fp32", "fp16", "int8")
INPUTS = ("float-nchw", "uint8-nhwc")
CALIB_METHODS = ("min-max",)  # coreai-opt's min/max range calculator (a moving average of it for activations)
KEEP_FLOAT = {"int8": "module names or module types (conv_1, LayerNorm) coreai-opt leaves unquantized; none = all int8"}
INT8_ROUTE = "pt2e"  # the float set comes from the PT2E search (the same torch graph coreai-opt quantizes)
RUNTIME_MODULES = ("coreai.runtime",)
# coreai-core's CPU runtime runs the asset here, seconds per image: numerics, not latency
CAPABILITIES = Capabilities(interpreted=True, untimed_numerics=True)
EXPORT_COST = 3
FUNCTION = "main"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
META_KEY = "mvit"
# The bundled CPU runtime takes 0.5 s (fp32) to 9 s (fp16) per 256x256 image on one core: parity checks this many
MAX_VERIFY = {"fp32": None, "int8": None, "fp16": 24}
VERSIONS = {"coreai-torch": "0.4.3", "coreai-core": "1.0.0b3", "coreai-opt": "0.4.0"}
MISSING = (
    "Core AI is not installed: pip install 'mvit[coreai]' (" + ", ".join(f"{k}=={v}" for k, v in VERSIONS.items()) + ")"
)


def unavailable() -> str | None:
    """Why this machine cannot export or run .aimodel assets (one line), or None."""
    # found, not imported: importing coreai-torch and coreai-opt takes seconds, and checks run for every request
    try:
        found = all(importlib.util.find_spec(m) is not None for m in ("coreai", "coreai_torch", "coreai_opt"))
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        found = False
    return None if found else MISSING


def _require() -> None:
    why = unavailable()
    if why:
        raise ExportError(why)


def can_time() -> tuple[bool, str]:
    """Never here: the bundled runtime is a reference CPU runtime, not what a phone runs."""
    return False, (
        "no latency: Core AI runs on Apple OSes 27; here its bundled CPU runtime (coreai-core) gives "
        "graph numerics only, not a device measurement"
    )


# ------------------------------------------------------------------------------------------ export


def export(job: ExportJob, path: Path) -> IOSpec:
    """Convert ``job`` to an .aimodel asset at ``path`` (a folder)."""
    _require()
    import coreai_torch  # lazy: optional extra [coreai]

    module, sample, layout, in_model = _graph(job)
    details: dict = {}
    if job.precision == "int8":
        module, details = quantize(job, module, sample, in_model)
    with torch.no_grad():
        program = torch.export.export(module, (sample,))  # eval already (a GraphModule's .eval() returns None)
        program = program.run_decompositions(coreai_torch.get_decomp_table())
    if job.precision == "int8" and details.get("float_compute") == "float16":
        from coreai_opt.casting import cast_to_16_bit_precision  # lazy: optional extra [coreai]

        program = cast_to_16_bit_precision(program)
    if job.precision == "fp16":
        from coreai_opt.casting import cast_fp32_to_fp16  # lazy: optional extra [coreai]

        program = cast_fp32_to_fp16(program)
        details = {"method": "coreai-opt cast_fp32_to_fp16", "compute": "float16 (input and output float16)"}
    save(program, path)
    io = io_details(path)
    return IOSpec(
        TensorSpec(INPUT_NAME, io["input"]["shape"], io["input"]["dtype"], layout),
        TensorSpec(OUTPUT_NAME, io["output"]["shape"], io["output"]["dtype"], "NC"),
        normalization_in_model=in_model,
        quantization_details=details,
    )


def _graph(job: ExportJob):
    """``input_graph`` of a job whose precision Core AI takes (ExportError otherwise)."""
    if job.precision not in PRECISIONS:
        raise ExportError(f"Core AI has no precision {job.precision!r} (it takes {', '.join(PRECISIONS)})")
    return input_graph(job, "Core AI")


@contextmanager
def _seeded_names(seed: int = 0):
    """coreai-core's graph-name suffixes from a seeded generator instead of ``secrets.choice``, so that
    one conversion of one program always writes the same bytes."""
    from coreai.authoring import func, graph_builder  # lazy: optional extra [coreai]

    rng = random.Random(seed)
    saved = graph_builder.choice, func.choice
    graph_builder.choice = func.choice = rng.choice
    try:
        yield
    finally:
        graph_builder.choice, func.choice = saved


def save(program, path: Path) -> None:
    """Convert an exported program (release mode, named I/O) and write the asset to ``path``."""
    import coreai_torch  # lazy: optional extra [coreai]

    with _seeded_names():
        conv = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
        conv.add_exported_program(
            program, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], entrypoint_name=FUNCTION
        )
        asset = conv.to_coreai().save_asset(Path(path))
    asset.update_metadata(_without_date)
    _sorted_metadata(path)


def _without_date(m) -> None:
    m.creation_date = None  # a timestamp would make every export's bytes differ


def _sorted_metadata(path: Path) -> None:
    """Rewrite the asset's metadata.json with sorted keys: coreai-core writes them in hash order, which
    differs between processes, so the same inputs would not give the same bytes."""
    f = Path(path) / "metadata.json"
    f.write_text(json.dumps(json.loads(f.read_text()), indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------ metadata


def _metadata_file(path: Path) -> dict:
    f = Path(path) / "metadata.json"
    if not Path(path).is_dir() or not f.exists() or not (Path(path) / "main.mlirb").exists():
        raise ValueError(f"{path}: not an .aimodel asset (no main.mlirb and metadata.json)")
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{path}: unreadable metadata.json") from None


def embed_metadata(path: Path, meta: dict) -> None:
    """Store model_meta, as a JSON string, under ``creatorDefinedMetadata.mvit`` of the asset's metadata.json."""
    _require()
    from coreai.authoring import AIModelAsset  # lazy: optional extra [coreai]

    value = to_json_bytes(meta).decode()  # a string: custom metadata takes no nulls

    def update(m):
        m.set_custom(META_KEY, value)
        m.model_description = f"mvit {meta.get('architecture')} ({meta.get('precision')})"
        m.creation_date = None

    AIModelAsset.load(path).update_metadata(update)
    _sorted_metadata(path)


def read_metadata(path: Path) -> dict:
    """The model_meta stored in an .aimodel asset's metadata.json."""
    text = _metadata_file(path).get("creatorDefinedMetadata", {}).get(META_KEY)
    try:
        meta = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: no mvit metadata in this .aimodel")
    return meta


def check_artifact(path: Path, meta: dict) -> list[str]:
    """The written asset against its metadata: one ``main`` function with the named I/O and shapes,
    the metadata read back unchanged, no source paths, and W8A8 quantize ops where int8 was asked."""
    problems = []
    io = io_details(path)
    for key, name in (("input", INPUT_NAME), ("output", OUTPUT_NAME)):
        if io[key]["name"] != name:
            problems.append(f"{key} named {io[key]['name']!r}, not {name!r}")
        if io[key]["shape"] != meta[key]["shape"] or io[key]["dtype"] != meta[key]["dtype"]:
            problems.append(
                f"{key} {io[key]['dtype']} {io[key]['shape']} != metadata {meta[key]['dtype']} {meta[key]['shape']}"
            )
    if read_metadata(path) != json.loads(json.dumps(meta)):
        problems.append("the metadata read back differs from what was written")
    data = (Path(path) / "main.mlirb").read_bytes()
    if any(s.encode() in data for s in _source_roots()):
        problems.append("source paths in the bytecode (debug mode)")
    ops = dict(_summary(path).operation_distribution)
    if meta["precision"] == "int8" and not (ops.get("quantize") and ops.get("dequantize")):
        problems.append("W8A8 requested but no quantize/dequantize ops are present")
    return problems


def _source_roots() -> list[str]:
    roots = {str(Path(mvit.__file__).resolve().parents[1]), str(Path(torch.__file__).resolve().parents[1])}
    return sorted(r for r in roots if len(r) > 4)


# ------------------------------------------------------------------------------------------ any .aimodel


def _summary(path: Path, statistics: bool = True):
    _require()
    from coreai.authoring import AIModelAsset  # lazy: optional extra [coreai]

    _metadata_file(path)
    try:
        s = AIModelAsset.load(path).summary(include_statistics=statistics)
    except RuntimeError as e:
        raise ValueError(f"{path}: unreadable .aimodel ({str(e).splitlines()[0][:120]})") from None
    if s is None:
        raise ValueError(f"{path}: the .aimodel holds no program")
    return s


_TYPE = re.compile(r"NDArray \((\w+), ([^)]*)\)")
_DTYPES = {"Float32": "float32", "Float16": "float16", "Int8": "int8", "UInt8": "uint8", "Int32": "int32"}


def _tensor(name: str, text: str) -> dict:
    m = _TYPE.fullmatch(text.strip())
    if not m:
        return {"name": name, "shape": [], "dtype": text, "quantization": None}
    shape = [int(v) for v in re.findall(r"\d+", m.group(2))]
    return {"name": name, "shape": shape, "dtype": _DTYPES.get(m.group(1), m.group(1).lower()), "quantization": None}


def io_details(path: Path) -> dict:
    """First input and output of the ``main`` function of any .aimodel: name, shape, dtype."""
    s = _summary(path, statistics=False)
    if FUNCTION not in s.function_names:
        raise ValueError(f"{path}: no {FUNCTION!r} function (has {', '.join(s.function_names)})")
    (iname, itype), *_ = s.function_inputs(FUNCTION)
    (oname, otype), *_ = s.function_outputs(FUNCTION)
    return {"input": _tensor(iname, itype), "output": _tensor(oname, otype)}


def missing_ops(path: Path) -> list[str]:
    """Nothing to check against: the bundled runtime compiles the whole program at load (a failure
    there is reported when the runner loads it)."""
    _summary(path, statistics=False)
    return []


def op_census(path: Path, threads: int = 2) -> dict:
    """Operations of the MLIR program (coreai-core's own count, composite bodies included) and the scalar
    types its tensors store; a device decides at load which compute unit runs what."""
    s = _summary(path)
    rows = [{"op": op, "dtype": "-", "count": int(n)} for op, n in s.operation_distribution]
    return {
        "runtime": RUNTIME,
        "delegate": None,
        "ops_total": sum(r["count"] for r in rows),
        "ops": sorted(rows, key=lambda r: (-r["count"], r["op"])),
        "storage_types": {t: int(n) for t, n in s.storage_types},
        "compute_types": list(s.compute_types),
        "dtype_note": "coreai-core's operation distribution of main.mlirb; storage_types: scalars stored per type",
    }


# ------------------------------------------------------------------------------------------ runner


class CoreAIRunner(Runner):
    """coreai-core's CPU runtime: the asset lowered to ODIX once, ``main`` run per image, ``threads``
    images at a time (one runtime thread each)."""

    def __init__(self, path: Path, meta: dict, threads: int = 2):
        _require()
        from coreai.authoring import AIModelAsset  # lazy: optional extra [coreai]

        super().__init__(path, meta)
        self.max_verify = MAX_VERIFY.get(meta.get("precision"))
        self.threads = max(1, threads)
        self._loop = asyncio.new_event_loop()
        self._cm = AIModelAsset.load(path).executable()
        try:
            model = self._loop.run_until_complete(self._cm.__aenter__())
            self._fn = model.load_function(FUNCTION)
        except BaseException:
            self._loop.close()
            raise

    numerics = "graph numerics from coreai-core's bundled CPU runtime (not a device measurement)"

    def invoke(self, native: np.ndarray) -> np.ndarray:
        from coreai.runtime import NDArray  # lazy: optional extra [coreai]

        async def one(i):
            out = await self._fn({INPUT_NAME: NDArray(np.ascontiguousarray(native[i : i + 1]))})
            return out[OUTPUT_NAME].numpy().astype(np.float32)

        async def all_():
            outs = []
            for s in range(0, native.shape[0], self.threads):
                outs += await asyncio.gather(*(one(i) for i in range(s, min(s + self.threads, native.shape[0]))))
            return outs

        return np.concatenate(self._loop.run_until_complete(all_()))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self._cm.__aexit__(None, None, None))
        finally:
            self._loop.close()


def load_runner(path: Path, threads: int = 2, meta: dict | None = None) -> Runner:
    """A runner for an .aimodel: its mvit metadata, or ``meta`` describing an asset without any."""
    return CoreAIRunner(Path(path), meta if meta is not None else read_metadata(path), threads)
