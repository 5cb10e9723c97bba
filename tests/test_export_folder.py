"""What an export leaves on disk: an ordinary folder with ordinary files."""
import stat

import mvit.model
from mvit.export.api import export_model
from mvit.model.checkpoint import CheckpointMeta, save_checkpoint
from mvit.model.contract import PreprocessContract


def test_export_folder_is_0755_and_files_0644(tmp_path):
    m = model.create("mobilevit_test", num_classes=3)
    meta = CheckpointMeta("mobilevit_test", ["a", "b", "c"], PreprocessContract(input_size=(64, 64)),
                          provenance={"test": "folder mode"})
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", m.eval(), meta)
    [res] = export_model(ckpt, ("onnx",), ("fp32",), tmp_path / "out", verify=False, say=lambda _: None)
    assert stat.S_IMODE(res.folder.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in res.folder.iterdir()} == {
        "model.onnx": 0o644, "model_meta.json": 0o644, "labels.txt": 0o644}
