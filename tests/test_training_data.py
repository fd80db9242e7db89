"""Training config resolution and the data pipeline (cache, normaliser, chunks, bad data)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.features import feature_config  # noqa: E402
from seld_edge.formats import get_output_format  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from training.config import resolve_config  # noqa: E402
from training.data import ChunkDataset, Normalizer, cache_folder, load_clips  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, n_train=2, n_test=1, seconds=8.0, seed=5, progress=False)
    return root


def test_config_layers_defaults_card_yaml_and_overrides(tmp_path):
    base = resolve_config("seldnet", "d", "o")
    assert (base.optimizer, base.lr, base.batch_size) == ("adam", 1e-3, 32)  # the card's training defaults
    assert base.augment == {"foa_rotation": True}
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 5e-4\nmodel:\n  rnn_size: 64\naugment:\n  spec_augment: true\n")
    config = resolve_config(
        "seldnet", "d", "o", yaml_file, ["batch_size=8", "augment.spec_augment.time_width=10", "model.dropout=0"],
        epochs=3,
    )  # fmt: skip
    assert (config.lr, config.batch_size, config.epochs) == (0.0005, 8, 3)
    assert config.model_args == {"rnn_size": 64, "dropout": 0}
    assert config.augment == {"foa_rotation": True, "spec_augment": {"time_width": 10}}
    assert json.loads(config.to_json())["model_args"]["rnn_size"] == 64
    auto = resolve_config("seldnet", "d", "o", overrides=["batch_size=auto", "max_batch_size=48"])
    assert (auto.batch_size, auto.max_batch_size) == ("auto", 48)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["batchsize=1"], r"unknown config key 'batchsize'; did you mean batch_size or max_batch_size\?"),
     (["model.rnn_sise=3"], r"unknown seldnet setting 'rnn_sise'; did you mean rnn_size\?"),
     (["optimizer=sgd"], "unknown optimizer 'sgd'; known: adam, adamw"),
     (["lr"], "not of the form key=value"),
     (["foo.bar=1"], "not a known section"),
     # every value against its type and range, before any data is read
     (["augment.rotation=true"], r"augment: unknown augmentation 'rotation'; did you mean foa_rotation\?"),
     (["epochs=abc"], "epochs must be an integer, got 'abc'"),
     (["lr=fast"], "lr must be a number, got 'fast'"),
     (["batch_size=2.5"], "batch_size must be an integer or auto, got 2.5"),
     (["batch_size=big"], "batch_size must be an integer or auto, got 'big'"),
     (["batch_size=-1"], "batch_size must be positive and finite, or auto to fit the memory, got -1"),
     (["max_batch_size=0"], "max_batch_size must be positive"),
     (["metric=dcase2099"], "unknown metric 'dcase2099'; did you mean"),
     (["chunk_seconds=0"], "chunk_seconds must be positive"),
     (["lr=.nan"], "lr must be positive and finite"),
     (["model.num_classes=abc"], "seldnet setting num_classes must be an integer, got 'abc'"),
     (["model.dropout=true"], "seldnet setting dropout must be a number, got True"),
     (["model_args=abc"], "model_args must be a mapping, got 'abc'"),
     (["augment.foa_rotation=maybe"], "augment: augmentation foa_rotation must be true, false or a mapping"),
     (["loss=bcee"], "unknown loss 'bcee'"),
     (["freeze=net"], "freeze must be a list of names, got 'net'"),
     (["patience=-1"], "patience must be positive"),
     (["init_from=3"], "init_from must be a string or null, got 3"),
     (["postprocess.thresholds=[0.5, 0.5]"], "postprocess: got 2 per-class thresholds for 13 classes")],
)  # fmt: skip
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(SeldEdgeError, match=message):
        resolve_config("seldnet", "d", "o", overrides=overrides)


def test_features_are_cached_per_config_and_the_normaliser_sees_train_only(dataset):
    config = feature_config("foa_logmel_iv")
    clips = load_clips(dataset, config, 13, progress=False)
    assert sorted(c.clip.split for c in clips) == ["test", "train", "train"]
    cached = sorted(cache_folder(dataset, config, None).rglob("*.npy"))
    assert len(cached) == 3 and cache_folder(dataset, feature_config("foa_logmel_iv_128"), None) != cached[0].parent
    name = cached[0].name.split(".")[0]
    np.testing.assert_array_equal(np.load(cached[0]), next(c for c in clips if c.clip.name == name).features)
    train = [c for c in clips if c.clip.split == "train"]
    normalizer = Normalizer.fit(train)
    stacked = np.concatenate([c.features for c in train], axis=1)
    np.testing.assert_allclose(normalizer.mean[:, 0], stacked.mean(axis=1), rtol=1e-4, atol=1e-4)
    assert normalizer.mean.shape == (7, 1, 64)


def test_changed_audio_behind_the_cache_gives_its_new_features(tmp_path):
    """The issue's case: another data set synthesised into the same folder (same clip names and sizes), here
    even with the earlier files' modification times, must not be read from the first one's cache."""
    import os
    import shutil

    from seld_edge.features import features_from_file

    config = feature_config("foa_logmel_iv")
    generate_dataset(tmp_path / "data", n_train=1, n_test=1, seconds=3.0, seed=1, progress=False)
    first = {c.clip.name: c.features for c in load_clips(tmp_path / "data", config, 13, progress=False)}
    generate_dataset(tmp_path / "other", n_train=1, n_test=1, seconds=3.0, seed=2, progress=False)
    for wav in (tmp_path / "other" / "foa_dev").rglob("*.wav"):
        target = tmp_path / "data" / wav.relative_to(tmp_path / "other")
        stat = target.stat()
        shutil.copyfile(wav, target)
        shutil.copyfile(tmp_path / "other" / "metadata_dev" / target.parent.name / f"{wav.stem}.csv",
                        tmp_path / "data" / "metadata_dev" / target.parent.name / f"{wav.stem}.csv")  # fmt: skip
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert target.stat().st_size == stat.st_size
    second = load_clips(tmp_path / "data", config, 13, progress=False)
    for clip in second:
        np.testing.assert_array_equal(clip.features, features_from_file(clip.clip.audio, config))
        difference = np.abs(clip.features - first[clip.clip.name]).max()
        print(f"{clip.clip.name}: fresh features differ from the first data set's by up to {difference:.1f} dB")
        assert difference > 10.0
    cached = sorted(cache_folder(tmp_path / "data", config, None).rglob("*.npy"))
    assert len(cached) == 2, "the first data set's cache files are replaced, not kept beside"


def test_chunks_cover_each_clip_and_targets_match_the_chunk(dataset):
    config = feature_config("foa_logmel_iv")
    clips = load_clips(dataset, config, 13, progress=False)
    fmt = get_output_format("multi_accdoa")
    data = ChunkDataset(clips, config, 10.0, chunk_seconds=2.0, hop_seconds=1.0, output_format=fmt, num_classes=13,
                        seed=1)  # fmt: skip
    features, targets = data[0]
    assert tuple(features.shape) == (7, 100, 64) and tuple(targets["adpit"].shape) == (20, 6, 4, 13)
    clip_index, start = data.index[0]  # in 100 ms steps
    np.testing.assert_array_equal(features.numpy(), clips[clip_index].features[:, 5 * start : 5 * start + 100])
    events = [e for e in clips[clip_index].events if start <= e.frame < start + 20]
    assert targets["adpit"][:, :, 0].sum().item() == pytest.approx(
        len({(e.frame, e.class_index, e.source) for e in events})
    )
    first_epoch = list(data.index)
    data.set_epoch(1)
    assert data.index != first_epoch, "chunk offsets are re-drawn each epoch"


def test_bad_data_sets(tmp_path, dataset):
    config = feature_config("foa_logmel_iv")
    (tmp_path / "foa_dev" / "dev-train-x").mkdir(parents=True)
    with pytest.raises(SeldEdgeError, match="no audio files"):
        load_clips(tmp_path, config, 13, progress=False)
    csv = next((dataset / "metadata_dev").rglob("*.csv"))
    original = csv.read_text()
    try:
        csv.write_text(original + "900,1,0,10,0,200\n")
        with pytest.raises(SeldEdgeError, match=r"frame 900 is past the end of .*\(80 label frames"):
            load_clips(dataset, config, 13, progress=False)
    finally:
        csv.write_text(original)
