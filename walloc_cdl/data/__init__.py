"""Latent datasets: read corpora (`sources`), pre-encode them into WebDataset shards (`encode`, `shards`),
read shards back for training (`loader`), or encode augmented batches on the GPU on the fly (`onthefly`).

Submodules are imported on use, so ``import walloc_cdl.data`` stays light.
"""
from .sources import (AudioFolder, HFSource, IdxSource, ImageFolder, Sample, Skipped, Source, SourceError, WdsSource,
                      load_fashion_mnist, open_source, read_idx)

__all__ = ["AudioFolder", "HFSource", "IdxSource", "ImageFolder", "Sample", "Skipped", "Source", "SourceError",
           "WdsSource", "load_fashion_mnist", "open_source", "read_idx"]
