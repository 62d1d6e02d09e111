"""Datasets: the `Dataset` split container, file loaders, the embedded real datasets and slicing."""

from datadiet.data.dataset import TASKS, Dataset, DatasetError, encode_labels
from datadiet.data.embedded import EMBEDDED, MissingAssetError, newsgroups20, reuters_r8, rotten_tomatoes
from datadiet.data.loaders import load_dataset, read_csv, read_jsonl, read_parquet
from datadiet.data.slicing import stratified_slice, stratified_split

__all__ = [
    "EMBEDDED",
    "TASKS",
    "Dataset",
    "DatasetError",
    "MissingAssetError",
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
