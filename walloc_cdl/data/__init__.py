"""Latent datasets: read corpora (`sources`), pre-encode them into WebDataset shards (`encode`, `shards`),
read shards back for training (`loader`), or encode augmented batches on the GPU on the fly (`onthefly`).

    from walloc_cdl.data import open_source, encode_dataset, EncodeOptions, LatentDataset, OnTheFlyEncoder
    encode_dataset(open_source("photos/"), "latents/photos", codec, "rgb-16x", EncodeOptions(resize=256,
                   crop="center"))
    for z, y in make_loader(LatentDataset("latents/photos", training=True, batch_size=64, crop=(28, 28))): ...

webdataset is imported when a shard is first written or read.
"""
from .encode import EncodeOptions, encode_dataset
from .loader import LatentDataset, NoShardsError, make_loader, random_crop
from .onthefly import OnTheFlyEncoder, encode_hf_dataset
from .shards import ShardWriter, codec_block, decode_sample, latent_sample, make_info, read_info, write_info
from .sources import (AudioFolder, HFSource, HFStreamSource, IdxSource, ImageFolder, Sample, Skipped, Source,
                      SourceError, WdsSource, load_fashion_mnist, open_source, read_idx)

__all__ = ["AudioFolder", "HFSource", "HFStreamSource",
           "IdxSource", "ImageFolder", "Sample", "Skipped", "Source", "SourceError",
           "WdsSource", "load_fashion_mnist", "open_source", "read_idx", "ShardWriter", "codec_block",
           "decode_sample", "latent_sample", "make_info", "read_info", "write_info", "EncodeOptions",
           "encode_dataset", "LatentDataset", "NoShardsError", "make_loader", "random_crop", "OnTheFlyEncoder",
           "encode_hf_dataset"]
