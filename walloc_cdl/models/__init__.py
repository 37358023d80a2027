"""Models that learn from WaLLoC latents: timm adapter stems (2D) and 1D audio networks."""
from .audio import AUDIO_ARCHS, create_audio_model, create_latent_audio_model
from .stems import STEMS, LatentSpec, create_latent_model, create_strided_model, latent_spec

__all__ = ["create_latent_model", "create_strided_model", "latent_spec", "LatentSpec", "STEMS",
           "create_audio_model", "create_latent_audio_model", "AUDIO_ARCHS"]
