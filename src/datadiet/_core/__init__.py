"""The private shared layer: parameter and array checks, row chunks, atomic files, JSON records and fault
sites. Nothing here imports another datadiet layer."""
