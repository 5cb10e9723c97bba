"""The checkpoint format and its error messages."""

import pickle

import pytest
import torch

from mvit import model
from mvit.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from mvit.model.contract import HF_MOBILEVIT, PreprocessContract


def _save(tmp_path, arch="mobilevit_test", labels=("cat", "dog", "fish"), contract=None):
    m = model.create(arch, num_classes=len(labels))
    meta = CheckpointMeta(
        arch, list(labels), contract or PreprocessContract(input_size=(64, 64)), provenance={"dataset": "synthetic"}
    )
    path = save_checkpoint(tmp_path / "ck.safetensors", m, meta)
    return m, path


def test_roundtrip_keeps_weights_labels_and_contract(tmp_path):
    contract = PreprocessContract(
        input_size=(64, 128),
        crop_fraction=0.9,
        interpolation="bicubic",
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        channel_order="BGR",
    )
    m, path = _save(tmp_path, contract=contract)
    ck = load_checkpoint(path)
    assert ck.meta.labels == ["cat", "dog", "fish"] and ck.meta.contract == contract
    assert ck.meta.provenance == {"dataset": "synthetic"}
    assert len(ck.sha256) == 64 and not ck.model.training
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(ck.model(x), m.eval()(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_hf_contract_feeds_the_model_bgr_pixels_scaled_to_unit_range(tmp_path):
    """Hugging Face MobileViT weights expect BGR /255: the contract stored with them must produce that
    from an RGB image, after a save/load round trip (weights are not permuted to RGB)."""
    import numpy as np

    from mvit.model.preprocess import normalize_hwc_uint8

    _, path = _save(tmp_path, contract=HF_MOBILEVIT)
    contract = load_checkpoint(path).meta.contract
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    x = normalize_hwc_uint8(red, contract)
    assert x.shape == (1, 3, 4, 4) and (x[0, 2] == 1.0).all() and (x[0, :2] == 0.0).all()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope.safetensors: no such file"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path):
    _, path = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_meta(p)


def test_pickle_passed_as_weights_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "model.pt"
    torch.save(model.create("mobilevit_test").state_dict(), p)
    with pytest.raises(CheckpointError, match="pickled PyTorch file; mvit never unpickles"):
        load_checkpoint(p)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(raw)


def test_wrong_variant_and_class_count(tmp_path):
    _, path = _save(tmp_path)
    with pytest.raises(CheckpointError, match="holds mobilevit_test, not the requested mobilevit_xxs"):
        load_checkpoint(path, architecture="mobilevit_xxs")
    with pytest.raises(CheckpointError, match="has 3 classes, expected 6"):
        load_checkpoint(path, num_classes=6)


def test_weights_that_do_not_fit_the_recorded_architecture(tmp_path):
    from safetensors.torch import save_file

    sd = {
        k: v
        for k, v in model.create("mobilevitv2_test", num_classes=3).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    meta = CheckpointMeta("mobilevit_test", ["a", "b", "c"], PreprocessContract())
    p = tmp_path / "bad.safetensors"
    save_file(sd, str(p), metadata={"mvit": meta.to_json()})
    with pytest.raises(CheckpointError, match="weights do not fit mobilevit_test"):
        load_checkpoint(p)


def test_foreign_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(1)}, str(p))
    with pytest.raises(CheckpointError, match="without mvit metadata; import foreign weights"):
        load_checkpoint(p)


def test_labels_must_match_the_head(tmp_path):
    m = model.create("mobilevit_test", num_classes=4)
    with pytest.raises(CheckpointError, match="4 classes but 3 labels"):
        save_checkpoint(
            tmp_path / "x.safetensors", m, CheckpointMeta("mobilevit_test", ["a", "b", "c"], PreprocessContract())
        )
    assert not any(tmp_path.iterdir())


def test_safetensors_header_starting_with_pickle_byte_is_not_mistaken_for_a_pickle(tmp_path):
    # A safetensors file starts with its header length; a low byte of 0x80 must not look like a pickle.
    for pad in range(300):
        m = model.create("mobilevit_test", num_classes=3)
        meta = CheckpointMeta("mobilevit_test", ["a", "b", "c"], PreprocessContract(), provenance={"p": "x" * pad})
        path = save_checkpoint(tmp_path / "ck.safetensors", m, meta)
        if path.read_bytes()[:1] == b"\x80":
            assert load_checkpoint(path).meta.provenance["p"] == "x" * pad
            return
    pytest.fail("no header length with low byte 0x80 was produced")
