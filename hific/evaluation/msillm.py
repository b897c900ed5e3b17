"""MS-ILLM (Muckley et al., ICML 2023) through NeuralCompression's own code, as a learned baseline.

Needs the optional extra ``pip install -e '.[msillm]'`` (``neuralcompression``,
which imports ``fvcore``). ``neuralcompression.zoo.msillm_quality_{1..6}``
with ``pretrained=True`` loads its weights with
``torch.hub.load_state_dict_from_url`` from Meta's download site, so they are
cached, found offline and checked exactly like CompressAI's
(:func:`hific.evaluation.learned.load_through_hub`): files
``msillm_target_{0.035,0.07,0.14,0.3,0.45,0.9}bpp.ckpt`` under the torch hub
``checkpoints/`` folder. The weights are released under CC-BY-NC 4.0.

The model's own ``compress``/``decompress`` write the strings (y, then z),
stored in the learned-codec container with the padded size as the shape.
NeuralCompression pads with reflection to a multiple of 64 itself. It keeps
the hyperprior and entropy models on the CPU; on a GPU the analysis and
synthesis transforms run there (its ``update_tensor_devices("compress")``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .learned import LearnedCodec, load_through_hub

__all__ = ["MSILLM_URL", "MsIllmCodec"]

MSILLM_URL = "https://dl.fbaipublicfiles.com/NeuralCompression/2023-muckley-msillm/msillm_{weights}.ckpt"
"""NeuralCompression's URL pattern (``neuralcompression/zoo/_msillm.py``)."""


class MsIllmCodec(LearnedCodec):
    """NeuralCompression's six MS-ILLM models (quality 1: ~0.035 bpp ... 6: ~0.9 bpp)."""

    name = "msillm"
    label = "MS-ILLM (NeuralCompression)"
    min_quality = 1
    max_quality = 6
    install_hint = "pip install -e '.[msillm]'  (neuralcompression and fvcore)"

    def __init__(self, weights_dir: Optional[str] = None, device: str = "cpu") -> None:
        super().__init__(weights_dir, device)
        self.explicit_qualities = tuple(range(self.min_quality, self.max_quality + 1))
        self.settings = {"library": "neuralcompression", "model": "HiFiCAutoencoder (MS-ILLM weights)",
                         "qualities": list(self.explicit_qualities),
                         "weights": "neuralcompression.zoo msillm_quality_N(pretrained=True) (torch hub cache)",
                         "weights_license": "CC-BY-NC 4.0", "padding": "reflect, to a multiple of 64",
                         "container": "quality, H, W, padded size, string lengths, strings (18 bytes)"}

    def _why_unavailable(self) -> Optional[str]:
        try:
            import neuralcompression.zoo  # noqa: F401
        except Exception as exc:  # ImportError, or one of its own imports (fvcore) missing
            return f"neuralcompression cannot be imported ({type(exc).__name__}: {exc})"
        return None

    def _load(self, quality: int) -> torch.nn.Module:
        from neuralcompression import zoo
        from neuralcompression.zoo._msillm import VALID_WEIGHTS

        url = MSILLM_URL.format(weights=VALID_WEIGHTS[quality - 1])
        builder = getattr(zoo, f"msillm_quality_{quality}")
        model = load_through_hub(lambda: builder(pretrained=True), url, self.weights_dir,
                                 f"msillm quality {quality}")
        model = model.eval().to(self.device)
        if self.device.type == "cpu":
            model.update()
        else:
            model.update_tensor_devices("compress")  # entropy models back on the CPU; also update()s
        return model

    def _code(self, model: torch.nn.Module, x: torch.Tensor) -> Tuple[Tuple[int, int], List[bytes]]:
        out = model.compress(x, force_cpu=False)
        return tuple(int(s) for s in out.padded_size), [out.latent_strings[0], out.hyper_latent_strings[0]]

    def _reconstruct(self, model: torch.nn.Module, height: int, width: int, shape: Tuple[int, int],
                     strings: List[bytes]) -> torch.Tensor:
        from neuralcompression import HyperpriorCompressedOutput

        packed = HyperpriorCompressedOutput(latent_strings=[strings[0]], hyper_latent_strings=[strings[1]],
                                            image_size=(height, width), padded_size=tuple(shape))
        return model.decompress(packed, force_cpu=False)
