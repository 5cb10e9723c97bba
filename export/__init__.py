"""mvit.export: a checkpoint to ONNX / TFLite / Core ML artifacts, each verified against the float model.

One backend module per format (``mvit.export.backends``), the metadata every artifact carries
(``mvit.export.metadata``), runners (``mvit.export.runner``) and the parity check (``mvit.export.parity``).
"""
