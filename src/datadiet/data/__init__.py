"""Datasets: the `Dataset` split container, file formats, loaders, the named sources and slicing."""

from datadiet.data.dataset import TASKS, Dataset, DatasetError, encode_labels
from datadiet.data.embedded import MissingAssetError, newsgroups20, reuters_r8, rotten_tomatoes
from datadiet.data.formats import read_csv, read_jsonl, read_parquet
from datadiet.data.loaders import load_dataset
from datadiet.data.slicing import stratified_slice, stratified_split
from datadiet.data.sources import DATASETS, DatasetSource, dataset_task

__all__ = [
    "DATASETS",
    "TASKS",
    "Dataset",
    "DatasetError",
    "DatasetSource",
    "MissingAssetError",
    "dataset_task",
    "encode_labels",
    "load_dataset",
    "newsgroups20",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "reuters_r8",
    "rotten_tomatoes",
    "stratified_slice",
    "stratified_split",
]
