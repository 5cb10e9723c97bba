"""coremltools' activation calibration (``linear_quantize_activations``) on Linux.

coremltools calibrates activations by running Core ML predictions of the float model with every
intermediate tensor added as an output: ``ModelDebugger.predict_intermediate_outputs`` in
``coremltools/optimize/coreml/experimental/_model_debugger.py`` builds that model and calls
``MLModel.predict``, which needs the macOS Core ML framework. :func:`interpreter_predictions`
replaces that one method, for the duration of a ``with`` block, by a run of the reference
interpreter that returns the same ``{tensor name: array}`` dict. Everything else (which tensors
are calibrated, the shared ranges around concat, the graph passes that insert quantize/dequantize)
is coremltools' own code, unchanged -- except one fix, on by default (``accumulate``):

coremltools 9.0 keeps the range of the *last* calibration sample only: its
``ModelDebugger.record_intermediate_output`` (and, for the model inputs, ``_update_tensor_range``
in ``optimize/coreml/experimental/_post_training_quantization.py``) stores the sample's min/max
before comparing it with the stored one, so each sample overwrites the ranges of those before it.
With ``accumulate=True`` the block also replaces those two by versions that keep the min/max over
all samples, as the documentation describes: the ranges then depend on the whole calibration set,
not on which image came last. It is not a gain in accuracy: plain min/max over all images widens the
ranges with outliers, and the last image's ranges did as well or better
(benchmarks/results/coreml_w8a8.md).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .interpreter import Interpreter, _from_spec


def _accumulate_range(name, value, stats) -> None:
    """Widen ``stats[name]`` (``{"rmin", "rmax"}``) to cover ``value``."""
    v = np.asarray(value)
    lo, hi = v.min(), v.max()
    s = stats[name]
    s["rmin"] = min(lo, s["rmin"]) if "rmin" in s else lo
    s["rmax"] = max(hi, s["rmax"]) if "rmax" in s else hi


@contextmanager
def interpreter_predictions(mode: str = "auto", accumulate: bool = True):
    """Within the block, coremltools' calibration predictions run on the reference interpreter;
    with ``accumulate``, activation ranges cover all samples, not only the last (see the module doc)."""
    from coremltools.optimize.coreml.experimental import _post_training_quantization as ptq  # lazy: heavy converter
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger  # lazy: heavy converter

    original = ModelDebugger.predict_intermediate_outputs
    original_record = ModelDebugger.__dict__["record_intermediate_output"]
    original_update = ptq._update_tensor_range

    def predict_intermediate_outputs(self, inputs, intermediate_output_names, compute_units=None):
        interp = self.__dict__.get("_mvit_interpreter")
        if interp is None:
            interp = Interpreter(_from_spec(self.model_info.spec, self.weights_dir, None))
            self.__dict__["_mvit_interpreter"] = interp
        key = tuple(intermediate_output_names)
        names = self.__dict__.setdefault("_mvit_names", {}).get(key)
        if names is None:  # same filter as the original: only tensors Core ML can return as multiarrays
            names = self.__dict__["_mvit_names"][key] = [
                n
                for n in intermediate_output_names
                if ModelDebugger.get_output_feature_type(n, self.block_info.operations) is not None
            ]
        env = interp.execute(inputs, mode, keep_all=True)
        out = {name: np.asarray(env[name], dtype=np.float32) for name in names}
        for name in interp.program.output_names:
            out[name] = env[name]
        return out

    ModelDebugger.predict_intermediate_outputs = predict_intermediate_outputs
    if accumulate:
        ModelDebugger.record_intermediate_output = staticmethod(
            lambda output_value, output_name, stats: _accumulate_range(output_name, output_value, stats)
        )
        ptq._update_tensor_range = lambda name, value, stats: _accumulate_range(name, value, stats)
    try:
        yield
    finally:
        ModelDebugger.predict_intermediate_outputs = original
        ModelDebugger.record_intermediate_output = original_record
        ptq._update_tensor_range = original_update


def calibrate_activations_linux(
    mlmodel,
    sample_data,
    config=None,
    quantize_weights: bool = True,
    weight_threshold: int = 2048,
    mode: str = "auto",
    weight_config=None,
    accumulate: bool = True,
):
    """W8A8 Core ML model via coremltools' own ``linear_quantize_activations``, calibrated here.

    ``mlmodel``: float ML Program (``ct.models.MLModel``, fp16 or fp32).
    ``sample_data``: list of ``{input name: value}`` dicts as ``MLModel.predict`` takes them
    (``{None: value}`` for a one-input model); image inputs as PIL images or 0..255 RGB NCHW arrays.
    ``config``: activation ``OptimizationConfig`` (default: linear_symmetric int8, coremltools' default).
    ``quantize_weights``: then also quantize weights with ``linear_quantize_weights``
    (linear_symmetric, per-channel; tensors with fewer than ``weight_threshold`` elements, the
    coremltools default 2048, stay float) to give W8A8; ``False`` returns the activation-only model.
    ``weight_config``: weight ``OptimizationConfig`` replacing that default (``weight_threshold`` is
    then ignored), e.g. to leave the ops excluded from activation quantization float as well.
    ``mode``: interpreter mode of the calibration runs (see ``run``).
    ``accumulate``: ranges over all samples (default); ``False`` keeps coremltools 9.0's behaviour,
    the range of the last sample alone (see the module doc).
    """
    import coremltools.optimize.coreml as cto  # lazy: heavy converter

    if config is None:
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
    with interpreter_predictions(mode, accumulate):
        model = cto.linear_quantize_activations(mlmodel, config, [dict(d) for d in sample_data])
    if quantize_weights:
        wcfg = weight_config or cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=weight_threshold)
        )
        model = cto.linear_quantize_weights(model, wcfg)
    return model
