"""Data layer: sources, global long tail, client partitions, local test sets, transforms.

Entry point for engines: :func:`build_federated_data` (federated) and :func:`load_source`
(any engine). Components are looked up by name in :data:`SOURCES` and :data:`PARTITIONERS`
(or given as ``package.module:callable`` in YAML).
"""

from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.data.client_testsets import local_test_indices
from fedlt.data.federated import FederatedData, build_federated_data, class_groups
from fedlt.data.longtail import apply_longtail, longtail_counts
from fedlt.data.partition import PARTITIONERS, build_partition
from fedlt.data.sources import SOURCES, load_source

__all__ = [
    "PARTITIONERS",
    "SOURCES",
    "ArrayDataset",
    "DataSplits",
    "FederatedData",
    "apply_longtail",
    "build_federated_data",
    "build_partition",
    "class_groups",
    "load_source",
    "local_test_indices",
    "longtail_counts",
]
