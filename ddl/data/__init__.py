"""Data sets held in memory as tensors: the embedded MNIST-5k, MNIST/Fashion-MNIST/CIFAR-10 from disk.

Every loader returns a :class:`Dataset`; :func:`load_dataset` is the one entry point the trainer and the
analysis use, so that a run directory's config rebuilds exactly the same split, subset and label noise.
"""

from ddl.data.augment import augment_cifar
from ddl.data.dataset import DATASETS, INPUT_SHAPES, DataError, Dataset, load_dataset
from ddl.data.subsets import stratified_subset

__all__ = ["DATASETS", "INPUT_SHAPES", "DataError", "Dataset", "augment_cifar", "load_dataset",
           "stratified_subset"]
