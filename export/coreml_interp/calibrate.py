"""coremltools' activation calibration (``linear_quantize_activations``) on Linux.

coremltools calibrates activations by running Core ML predictions of the float model with every
intermediate tensor added as an output: ``ModelDebugger.predict_intermediate_outputs`` in
``coremltools/optimize/coreml/experimental/_model_debugger.py`` builds that model and calls
``MLModel.predict``, which needs the macOS Core ML framework. :func:`interpreter_predictions`
replaces that one method, for the duration of a ``with`` block, by a run of the reference
interpreter that returns the same ``{tensor name: array}`` dict. Everything else (which tensors
are calibrated, min/max collection, the shared ranges around concat, the graph passes that insert
quantize/dequantize) is coremltools' own code, unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .interpreter import Interpreter, _from_spec


@contextmanager
def interpreter_predictions(mode: str = "auto"):
    """Within the block, coremltools' calibration predictions run on the reference interpreter."""
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger

    original = ModelDebugger.predict_intermediate_outputs

    def predict_intermediate_outputs(self, inputs, intermediate_output_names, compute_units=None):
        interp = self.__dict__.get("_mvit_interpreter")
        if interp is None:
            interp = Interpreter(_from_spec(self.model_info.spec, self.weights_dir, None))
            self.__dict__["_mvit_interpreter"] = interp
        env = interp.execute(inputs, mode, keep_all=True)
        out = {}
        for name in intermediate_output_names:
            # same filter as the original: only tensors Core ML can return as multiarrays
            if ModelDebugger.get_output_feature_type(name, self.block_info.operations) is not None:
                out[name] = np.asarray(env[name], dtype=np.float32)
        for name in interp.program.output_names:
            out[name] = env[name]
        return out

    ModelDebugger.predict_intermediate_outputs = predict_intermediate_outputs
    try:
        yield
    finally:
        ModelDebugger.predict_intermediate_outputs = original


def calibrate_activations_linux(mlmodel, sample_data, config=None, quantize_weights: bool = True,
                                weight_threshold: int = 2048, mode: str = "auto"):
    """W8A8 Core ML model via coremltools' own ``linear_quantize_activations``, calibrated here.

    ``mlmodel``: float ML Program (``ct.models.MLModel``, fp16 or fp32).
    ``sample_data``: list of ``{input name: value}`` dicts as ``MLModel.predict`` takes them
    (``{None: value}`` for a one-input model); image inputs as PIL images or 0..255 RGB NCHW arrays.
    ``config``: activation ``OptimizationConfig`` (default: linear_symmetric int8, coremltools' default).
    ``quantize_weights``: then also quantize weights with ``linear_quantize_weights``
    (linear_symmetric, per-channel; tensors with fewer than ``weight_threshold`` elements, the
    coremltools default 2048, stay float) to give W8A8; ``False`` returns the activation-only model.
    ``mode``: interpreter mode of the calibration runs (see ``run``).
    """
    import coremltools.optimize.coreml as cto

    if config is None:
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
    with interpreter_predictions(mode):
        model = cto.linear_quantize_activations(mlmodel, config, [dict(d) for d in sample_data])
    if quantize_weights:
        wcfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                          weight_threshold=weight_threshold))
        model = cto.linear_quantize_weights(model, wcfg)
    return model
