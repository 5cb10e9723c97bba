"""Reference interpreter for Core ML ML Programs: Core ML numerics checked on any OS.

No Apple runtime exists off macOS, so this package executes a saved ``.mlpackage`` itself: coremltools'
milproto loader (pinned: ``PINNED_COREMLTOOLS``) reads the program and its weights, and every op runs
in numpy (``ops.OPS``, one function per MIL op type) in fp16 emulation, fp32 or fp64. Results are
*graph numerics from the reference interpreter*, not a device measurement: they show what the
program computes (conversion faults, fp16 overflow, quantization), not what a given chip rounds.

Public API:
  load_program(path) -> CoreMLProgram        read a package (one-line ValueError if it is not one)
  run(program_or_path, inputs, mode) -> dict  execute; see ``run`` for modes and image inputs
  scores(outputs, program) -> ndarray         the score vector (classifier dict in label order)
  check_against_reference(path, torch_model, inputs, precision) -> dict
                                              parity metrics and pass/fail (thresholds of issue 7)
  calibrate_activations_linux(mlmodel, samples) -> MLModel
                                              coremltools' linear_quantize_activations, calibrated here
  UnsupportedOpError, ProgramError            loud failures, naming the op
"""

from .calibrate import calibrate_activations_linux, interpreter_predictions
from .check import SOURCE_LABEL, THRESHOLDS, check_against_reference, compare
from .interpreter import (
    PINNED_COREMLTOOLS,
    CoreMLProgram,
    Interpreter,
    ProgramError,
    UnsupportedOpError,
    load_program,
    run,
    scores,
)

__all__ = [
    "PINNED_COREMLTOOLS",
    "SOURCE_LABEL",
    "THRESHOLDS",
    "CoreMLProgram",
    "Interpreter",
    "ProgramError",
    "UnsupportedOpError",
    "calibrate_activations_linux",
    "check_against_reference",
    "compare",
    "interpreter_predictions",
    "load_program",
    "run",
    "scores",
]
