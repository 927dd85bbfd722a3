"""Standard datasets from a data root: IDX and CIFAR pickles, tiny generated files in each format."""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from pytest_prune.data.base import load_dataset
from pytest_prune.data.disk import NORMALISATION, DataError, read_idx
from pytest_prune.registry import load_builtins

load_builtins()


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def make_mnist(folder, gz=False, train=20, test=10, label_max=9, high=256):
    rng = np.random.RandomState(0)
    files = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.randint(0, high, (count, 28, 28))
        labels = np.arange(count) % (label_max + 1)
        files[f"{prefix}-images"] = write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        files[f"{prefix}-labels"] = write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return files


def make_cifar(root, name="cifar10", per_batch=8, test=6):
    rng = np.random.RandomState(1)
    folder, files, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10),
        "cifar100": ("cifar-100-python", ["train", "test"], b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True, exist_ok=True)
    for file in files:
        count = test if "test" in file else per_batch
        batch = {b"data": rng.randint(0, 256, (count, 3072)).astype(np.uint8), key: list(np.arange(count) % classes)}
        (root / folder / file).write_bytes(pickle.dumps(batch, protocol=2))
    return root / folder


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST/raw"), ("fashion_mnist", "fashion_mnist")])
def test_idx_datasets_load_normalised(tmp_path, gz, name, folder):
    make_mnist(tmp_path / folder, gz)
    data = load_dataset(name, tmp_path)
    data.validate(name)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)
    assert data.train_y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and data.augmentation == ""
    mean, std = NORMALISATION[name]
    raw = read_idx(next((tmp_path / folder).glob("train-images*")))
    expected = (torch.from_numpy(raw[0].astype(np.float32)) / 255 - mean[0]) / std[0]
    assert torch.allclose(data.train_x[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize(("name", "classes", "train"), [("cifar10", 10, 40), ("cifar100", 100, 8)])
def test_cifar_pickles_load_with_augmentation(tmp_path, name, classes, train):
    make_cifar(tmp_path, name)
    data = load_dataset(name, tmp_path)
    data.validate(name)
    assert data.train_x.shape == (train, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.num_classes == classes and data.augmentation == "crop4+flip"
    assert data.normalisation["mean"] == NORMALISATION[name][0]


def test_a_missing_root_says_where_the_files_go(tmp_path):
    where = r"give --prune-data-root DIR \(`pytest-prune train --data-root DIR`\), or set PYTEST_PRUNE_DATA.*cifar-10"
    with pytest.raises(DataError, match=where):
        load_dataset("cifar10", None)
    with pytest.raises(DataError, match=r"data root \S*nowhere is not a folder"):
        load_dataset("mnist", tmp_path / "nowhere")


def test_a_stale_environment_data_root_is_named_as_such(tmp_path, monkeypatch):
    """A PYTEST_PRUNE_DATA set long ago that names a folder gone since: the error says where the path came from."""
    from pytest_prune.settings import build

    monkeypatch.setenv("PYTEST_PRUNE_DATA", str(tmp_path / "gone"))
    root = build({}).data_root
    with pytest.raises(DataError, match=r"data root \S*gone \(PYTEST_PRUNE_DATA\) is not a folder"):
        load_dataset("mnist", root)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*\(raw or .gz\) not found in"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="data_batch_1, data_batch_2, .*test_batch not found in"):
        load_dataset("cifar10", tmp_path)


def test_truncated_and_foreign_idx_files_name_the_file(tmp_path):
    files = make_mnist(tmp_path / "mnist")
    path = files["train-images"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: 15,596 bytes, but its header announces shape"):
        load_dataset("mnist", tmp_path)
    path.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DataError, match="not an IDX file of unsigned bytes"):
        load_dataset("mnist", tmp_path)
    gz = write_idx(tmp_path / "g" / "x", np.zeros((3, 4)), gz=True)
    gz.write_bytes(gz.read_bytes()[:10])
    with pytest.raises(DataError, match="cannot be read or decompressed"):
        read_idx(gz)


def test_idx_files_are_gzip_by_their_bytes_not_their_name_and_damaged_gzip_names_the_file(tmp_path):
    files = make_mnist(tmp_path / "mnist", gz=True)
    expected = load_dataset("mnist", tmp_path)
    for path in files.values():  # the .gz names kept, the contents unpacked (as a browser may leave them)
        path.write_bytes(gzip.decompress(path.read_bytes()))
    assert torch.equal(load_dataset("mnist", tmp_path).train_x, expected.train_x)
    for path in files.values():  # gzip contents under the raw names
        path.rename(path.with_suffix("")).write_bytes(gzip.compress(path.with_suffix("").read_bytes()))
    assert torch.equal(load_dataset("mnist", tmp_path).test_x, expected.test_x)
    packed = gzip.compress(np.arange(4000, dtype=np.uint32).tobytes())
    for i in range(20, len(packed) - 8):  # a damaged deflate stream fails in zlib, not in gzip
        damaged = packed[:i] + bytes([packed[i] ^ 0xFF]) + packed[i + 1 :]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            break
    (tmp_path / "bad.gz").write_bytes(damaged)
    with pytest.raises(DataError, match=r"bad.gz: cannot be read or decompressed \(Error -3.*download it again"):
        read_idx(tmp_path / "bad.gz")


def test_counts_and_labels_are_checked_per_file(tmp_path):
    files = make_mnist(tmp_path / "mnist", label_max=9)
    write_idx(files["t10k-labels"], np.arange(7) % 10)
    mismatch = "t10k-images-idx3-ubyte has 10 images but .*t10k-labels-idx1-ubyte has 7 labels"
    with pytest.raises(DataError, match=mismatch):
        load_dataset("mnist", tmp_path)
    write_idx(files["t10k-labels"], np.arange(10) + 3)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: labels span 3..12, outside 0..9"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_pickles_of_every_protocol_load(tmp_path, protocol):
    """A batch written again with a newer pickle protocol (5 rebuilds arrays from their raw bytes) loads."""
    folder = make_cifar(tmp_path)
    batch = {b"data": np.full((2, 3072), 7, np.uint8), b"labels": np.asarray([3, 4])}
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=protocol))
    data = load_dataset("cifar10", tmp_path)
    assert len(data.train_x) == 4 * 8 + 2 and data.train_y.tolist()[16:18] == [3, 4]


def test_a_damaged_array_type_in_a_cifar_pickle_is_an_error_not_a_crash(tmp_path):
    """numpy trusts a pickled dtype's state: a damaged one crashed the interpreter (in a subprocess here)."""
    folder = make_cifar(tmp_path)
    batch = (folder / "data_batch_2").read_bytes()
    state = batch.index(b"K\x03X\x01\x00\x00\x00|q") + 10  # (3, '|', None, None, None, -1, -1, 0) after a memo
    assert batch[state : state + 3] == b"NNN"
    # its first None becomes BININT2, which reads the next two as its bytes: (3, '|', 20046, -1, -1, 0)
    (folder / "data_batch_2").write_bytes(batch[:state] + b"M" + batch[state + 1 :])
    code = "import sys, pathlib; from pytest_prune.data.disk import read_cifar_batch as read; "
    code += "read(pathlib.Path(sys.argv[1]), 'labels', 10)"
    path = str(folder / "data_batch_2")
    run = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "data_batch_2: not a readable CIFAR python pickle" in run.stderr
    assert "the state of a uint8 array type is damaged" in run.stderr


def test_cifar_pickles_are_checked_and_never_run_code(tmp_path):
    folder = make_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR python pickle"):
        load_dataset("cifar10", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing to unpickle builtins.print.*write the batch again") as refused:
        load_dataset("cifar10", tmp_path)
    assert "download" not in str(refused.value)  # the file is intact; downloading it again would not help
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}))
    with pytest.raises(DataError, match=r"data_batch_3: labels span 0..11, outside 0..9"):
        load_dataset("cifar10", tmp_path)
    for labels, shown in (([0.5, 1.0], r"\(2,\) of float64"), ([[0], [1]], r"\(2, 1\) of int64"), (["a", "b"], "<U1")):
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": np.asarray(labels)}
        (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
        with pytest.raises(DataError, match=r"data_batch_3: labels must be a 1-D list of class indices .* " + shown):
            load_dataset("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'data' is uint8 \(2, 100\), expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)


def test_cifar_batches_written_again_with_str_keys_load(tmp_path):
    """Python 3 writes a batch's keys as str: {"data": ..., "labels": ...} loads as the originals' bytes keys do."""
    folder = make_cifar(tmp_path)
    batch = {"data": np.full((2, 3072), 7, np.uint8), "labels": [3, 4]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", tmp_path)
    assert len(data.train_x) == 4 * 8 + 2 and data.train_y.tolist()[16:18] == [3, 4]


def test_the_four_idx_files_come_from_one_folder(tmp_path):
    make_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    make_mnist(tmp_path / "MNIST" / "raw", train=4)
    data = load_dataset("mnist", tmp_path)  # MNIST/raw has all four; mnist/ lacks one
    assert len(data.train_x) == 4 and str(tmp_path / "MNIST" / "raw") in data.description
    for path in (tmp_path / "MNIST" / "raw").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(raw or .gz\) not found in .*mnist, which holds"):
        load_dataset("mnist", tmp_path)


def test_idx_files_unpacked_in_folders_of_their_own_names_or_with_a_dot_load(tmp_path):
    """Some archives unpack `train-images-idx3-ubyte/train-images-idx3-ubyte`; some mirrors name the files
    `train-images.idx3-ubyte`."""
    files = make_mnist(tmp_path / "staging")
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "mnist" / stem).mkdir(parents=True)
        files[stem.rsplit("-", 2)[0]].rename(tmp_path / "mnist" / stem / stem)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        files[stem.rsplit("-", 2)[0]].rename(tmp_path / "mnist" / stem.replace("-idx", ".idx"))
    data = load_dataset("mnist", tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)


def test_the_other_mnist_family_dataset_s_files_are_refused(tmp_path):
    """Fashion-MNIST's files unpacked straight into DIR would load as MNIST: their mean pixel gives them away."""
    make_mnist(tmp_path, high=147)  # mean pixel 73/255 = 0.286, Fashion-MNIST's
    with pytest.raises(DataError, match=r"looks like Fashion-MNIST, not MNIST \(mean pixel 0.28.*put MNIST's files in"):
        load_dataset("mnist", tmp_path)
    make_mnist(tmp_path / "fashion_mnist", high=67)  # mean 0.131, MNIST's
    with pytest.raises(DataError, match=r"looks like MNIST, not Fashion-MNIST"):
        load_dataset("fashion_mnist", tmp_path)
