"""mvit's int8 quantization engine: calibration data, PT2E calibration and conversion, and the choice of
which layers stay float. Export backends call it; it knows no file formats, only the quantizer
configurations they need."""


class QuantError(ValueError):
    """Quantization that cannot be done as asked: one line saying what and why."""
