"""Data by name: ``torchvision:<Name>`` and ``hf:<path>`` sources on small files written here
in each real format, and ``flwr_datasets:<Partitioner>`` through ``fedlt partition``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fedlt.cli import main
from fedlt.config import DataConfig, load_config
from fedlt.data.sources import load_source
from fedlt.errors import ConfigError, DataError

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load(tmp_path: Path, source: str, root: Path | None = None, **options):
    cfg = DataConfig(source=source, root=str(root) if root else None, options=options)
    cfg.cache_dir = str(tmp_path / "cache")
    return load_source(cfg, 0)


def idx_bytes(array: np.ndarray) -> bytes:
    """LeCun's idx format: 00 00 08 <ndim>, big-endian int32 sizes, then the uint8 data."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_arrays(train: int = 30, test: int = 10) -> dict[str, np.ndarray]:
    """Image i of class c has pixel (0, 0) = 20 * c and (27, 27) = i (orientation check)."""
    out = {}
    for split, count in (("train", train), ("test", test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20
        images[:, 27, 27] = np.arange(count)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def write_mnist(root: Path, name: str, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, file in MNIST_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            with gzip.open(raw / f"{file}.gz", "wb") as handle:
                handle.write(data)
        else:
            (raw / file).write_bytes(data)
    return root


# ----------------------------------------------------------------------------- torchvision
def test_fashion_mnist_from_raw_idx_gz(tmp_path):
    arrays = mnist_arrays()
    root = write_mnist(tmp_path / "data", "FashionMNIST", arrays)
    splits = load(tmp_path, "torchvision:FashionMNIST", root)
    assert splits.train.images.shape == (30, 28, 28, 1) and splits.train.images.dtype == np.uint8
    assert splits.test.images.shape == (10, 28, 28, 1)
    assert splits.train.classes[0] == "T-shirt/top" and splits.num_classes == 10
    assert np.array_equal(splits.train.labels, arrays["train_labels"])
    assert np.array_equal(splits.train.images[:, 0, 0, 0], arrays["train_labels"] * 20)
    assert np.array_equal(splits.train.images[:, 27, 27, 0], np.arange(30))
    assert splits.name == "FashionMNIST" and splits.image_shape == (1, 28, 28)


def test_mnist_reader_matches_torchvision_on_unpacked_files(tmp_path):
    from torchvision import datasets

    arrays = mnist_arrays()
    root = write_mnist(tmp_path / "data", "MNIST", arrays, gz=False)
    splits = load(tmp_path, "torchvision:MNIST", root)
    reference = datasets.MNIST(str(root), train=False)
    assert np.array_equal(splits.test.images[..., 0], reference.data.numpy())
    assert np.array_equal(splits.test.labels, reference.targets.numpy())


def test_torchvision_missing_files_name_root_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"data[/\\]?.*no FashionMNIST files.*FashionMNIST/raw/"):
        load(tmp_path, "torchvision:FashionMNIST", tmp_path / "data")
    with pytest.raises(ConfigError, match=r"data.root: required for torchvision:SVHN"):
        load(tmp_path, "torchvision:SVHN")


def test_torchvision_unknown_class_suggests_close_name():
    with pytest.raises(
        ConfigError, match=r"data.source: .*'FashionMnist'.*did you mean 'FashionMNIST'"
    ):
        load_config(None, ["data.source=torchvision:FashionMnist"])


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "svhn"
    root.mkdir()
    for split, count in (("train", 12), ("test", 5)):
        labels = np.arange(count) % 10 + 1  # SVHN stores digit 0 as 10
        x = np.zeros((32, 32, 3, count), dtype=np.uint8)
        x[0, 1, 2, :] = labels  # row 0, column 1, channel 2
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": labels[:, None].astype(np.uint8)})
    splits = load(tmp_path, "torchvision:SVHN", root)
    assert splits.train.images.shape == (12, 32, 32, 3)
    assert splits.train.labels.tolist() == [(i % 10 + 1) % 10 for i in range(12)]
    assert np.array_equal(splits.train.images[:, 0, 1, 2], np.arange(12) % 10 + 1)


def test_stl10_binaries(tmp_path):
    folder = tmp_path / "stl" / "stl10_binary"
    folder.mkdir(parents=True)
    for split, count in (("train", 4), ("test", 2)):
        images = np.zeros((count, 96, 96, 3), dtype=np.uint8)  # NHWC
        images[:, 5, 7, 1] = 200  # row 5, column 7, green
        # STL-10 stores each image column-major per channel: (N, C, W, H) bytes
        images.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")
        np.full(count, 3, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    splits = load(tmp_path, "torchvision:STL10", tmp_path / "stl")
    assert splits.train.images.shape == (4, 96, 96, 3)
    assert splits.train.images[0, 5, 7, 1] == 200 and splits.train.images[0, 7, 5, 1] == 0
    assert splits.train.labels.tolist() == [2] * 4 and splits.train.classes[2] == "c2"


def test_other_torchvision_classes_go_through_torchvision(tmp_path, monkeypatch):
    """A class without a native reader: built by torchvision (split argument), image by
    image, resized by data.options.image_size."""
    from torchvision import datasets

    class TinySplits(datasets.VisionDataset):
        def __init__(self, root, split="train", download=False, colour="red"):
            super().__init__(root)
            self.split, self.colour = split, colour
            self.classes = ["a", "b"]

        def __len__(self):
            return 4 if self.split == "train" else 2

        def __getitem__(self, i):
            size = 5 + i  # sizes differ: needs image_size
            return Image.new("RGB", (size, size), self.colour), i % 2

    monkeypatch.setattr(datasets, "TinySplits", TinySplits, raising=False)
    root = tmp_path / "tiny"
    root.mkdir()
    with pytest.raises(DataError, match=r"train image 1: image is 6x6.*data.options.image_size"):
        load(tmp_path, "torchvision:TinySplits", root)
    splits = load(tmp_path, "torchvision:TinySplits", root, image_size=4, kwargs={"colour": "blue"})
    assert splits.train.images.shape == (4, 4, 4, 3) and splits.test.images.shape == (2, 4, 4, 3)
    assert splits.train.images[0, 0, 0].tolist() == [0, 0, 255]
    assert splits.train.classes == ["a", "b"] and splits.train.labels.tolist() == [0, 1, 0, 1]


# ----------------------------------------------------------------------------- Hugging Face
def hf_dataset(count: int, names=("ant", "bee", "cat")):
    """Image i: 6x6 RGB filled with 40 * label; label i % len(names) (a ClassLabel)."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    labels = [i % len(names) for i in range(count)]
    images = [Image.new("RGB", (6, 6), (40 * c, 0, 0)) for c in labels]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_hf_save_to_disk_dataset_dict(tmp_path):
    from datasets import DatasetDict

    path = tmp_path / "hf" / "tiny"
    DatasetDict({"train": hf_dataset(9), "test": hf_dataset(3)}).save_to_disk(str(path))
    splits = load(tmp_path, "hf:tiny", tmp_path / "hf")  # relative to data.root
    assert splits.train.images.shape == (9, 6, 6, 3) and splits.test.images.shape == (3, 6, 6, 3)
    assert splits.train.classes == ["ant", "bee", "cat"]
    assert splits.train.labels.tolist() == [0, 1, 2] * 3
    assert splits.train.images[:, 0, 0, 0].tolist() == [0, 40, 80] * 3
    assert splits.name == "hf:tiny"


def test_hf_parquet_hub_layout_with_other_column_names(tmp_path):
    path = tmp_path / "parquet"
    (path / "data").mkdir(parents=True)
    for split, count in (("train", 6), ("test", 3)):
        dataset = hf_dataset(count).rename_columns({"image": "img", "label": "fine"})
        dataset.to_parquet(str(path / "data" / f"{split}-00000-of-00001.parquet"))
    with pytest.raises(DataError, match=r"no column 'label' \(data.options.label_column\)"):
        load(tmp_path, f"hf:{path}")
    splits = load(tmp_path, f"hf:{path}", image_column="img", label_column="fine")
    assert splits.train.images.shape == (6, 6, 6, 3)
    assert splits.train.classes == ["ant", "bee", "cat"]
    assert splits.test.labels.tolist() == [0, 1, 2]


def test_hf_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: dataset folder not found.*never downloads"):
        load(tmp_path, f"hf:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no data files for split 'train'.*save_to_disk"):
        load(tmp_path, f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match=r"data.options.image_colum: unknown key"):
        load(tmp_path, f"hf:{tmp_path / 'empty'}", image_colum="x")


# ----------------------------------------------------------------------------- flwr-datasets
def partition_config(tmp_path: Path, partition: dict, name: str = "cfg.yaml") -> str:
    config = {
        "name": "flwr",
        "seed": 3,
        "data": {
            "source": "synthetic",
            "cache_dir": str(tmp_path / "cache"),
            "options": {"num_classes": 5, "image_size": 4, "train_per_class": 40},
            "longtail": {"profile": "exponential", "imbalance_factor": 4},
            "partition": partition,
        },
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_partition(config: str, out: Path, *overrides: str) -> dict:
    args = ["partition", config, "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    return {
        "partition": json.loads((out / "partition.json").read_text()),
        "stats": json.loads((out / "stats.json").read_text()),
    }


def test_flwr_dirichlet_partitioner_through_fedlt_partition(tmp_path):
    partition = {
        "name": "flwr_datasets:DirichletPartitioner",
        "num_clients": 4,
        "options": {"alpha": 0.3, "min_partition_size": 5, "self_balancing": True},
    }
    config = partition_config(tmp_path, partition)
    first = run_partition(config, tmp_path / "a")
    again = run_partition(config, tmp_path / "b")
    other = run_partition(config, tmp_path / "c", "seed=4")
    clients = first["partition"]["clients"]
    num_train = first["partition"]["meta"]["num_train"]
    assert num_train == sum(int(40 * 0.25 ** (c / 4)) for c in range(5))  # after the long tail
    assert sorted(i for k in range(4) for i in clients[str(k)]) == list(range(num_train))
    assert min(c["size"] for c in first["stats"]["clients"]) >= 5
    assert clients == again["partition"]["clients"]
    assert clients != other["partition"]["clients"]  # the run seed reaches the partitioner


def test_flwr_pathological_partitioner_limits_classes(tmp_path):
    partition = {
        "name": "flwr_datasets:PathologicalPartitioner",
        "num_clients": 5,
        # every class gets a first client, so no class (and no sample) is left out by chance
        "options": {"num_classes_per_partition": 2, "class_assignment_mode": "first-deterministic"},
    }
    result = run_partition(partition_config(tmp_path, partition), tmp_path / "out")
    assert all(c["classes_present"] <= 2 for c in result["stats"]["clients"])
    assert sum(c["size"] for c in result["stats"]["clients"]) == result["stats"]["num_train"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.partition.name=flwr_datasets:DirichletPartitionr",
            "did you mean 'DirichletPartitioner'",
        ),
        (
            "data.partition.options={alpha: 0.5, alhpa: 1}",
            "data.partition.options: DirichletPartitioner cannot be built",
        ),
        (
            "data.partition.options={alpha: 0.5, num_partitions: 3}",
            "options.num_partitions: set data.partition.num_clients",
        ),
        (
            "data.partition.options={alpha: 0.5, partition_by: x}",
            "partition_by: fedlt partitions by class label",
        ),
    ],
)
def test_flwr_partitioner_config_errors(override, message):
    base = ["data.partition.name=flwr_datasets:DirichletPartitioner"]
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*base, "data.partition.options={alpha: 0.5}", override])


@pytest.mark.filterwarnings("ignore:The sum of partition sizes")
def test_flwr_partitioner_count_must_match_num_clients(tmp_path):
    partition = {
        "name": "flwr_datasets:SizePartitioner",
        "num_clients": 4,
        "options": {"partition_sizes": [10, 10, 10]},
    }
    assert (
        main(["partition", partition_config(tmp_path, partition), "--out", str(tmp_path / "o")])
        == 2
    )
