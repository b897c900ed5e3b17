"""Classical image codecs as baselines, matched to a target bit rate.

Every codec here writes a real, complete, standalone file of its format
(``.jpg``, ``.webp``, ``.avif``, ``.jxl``, ``.heic``) and reads it back, so a
baseline's bits per pixel is ``8 * len(file) / (H * W)``, headers and
container boxes included, exactly like a ``.hific`` file's.

The registry (:data:`CODECS`):

========  ===============================  ==========  ================================
name      library                          quality     fixed settings
========  ===============================  ==========  ================================
``jpeg``  Pillow (libjpeg-turbo)           1..95       4:2:0, ``optimize=True``, baseline
``webp``  Pillow (libwebp)                 0..100      lossy, ``method=6`` (4:2:0 always)
``avif``  Pillow's AVIF plugin (libaom)    0..100      4:2:0, ``speed=6``, full range
``jxl``   imagecodecs (libjxl)             0..99       ``effort=8``, quality -> distance
``hevc``  pillow-heif (libheif + x265)     0..100      4:2:0, preset slow, tune ssim
========  ===============================  ==========  ================================

Why these settings (PSNR at equal real bpp, interpolated on log-bpp from
quality sweeps, on validation photos CBSD68_101085 and CBSD68_216081 (481x321)
and McMaster_11 (500x500)):

* **AVIF 4:2:0, speed 6.** At speed 6, 4:2:0 and 4:4:4 tied on the two CBSD68
  photos (0.15 / 0.2 / 0.3 bpp: 21.95/22.63/23.67 vs 21.95/22.61/23.66 dB and
  23.64/24.50/25.80 vs 23.58/24.50/25.80 dB); 4:4:4 won on the colourful
  McMaster photo by 0.1-0.18 dB (30.12/31.13/32.59 vs 30.23/31.26/32.77) but
  lost at 0.1 bpp (28.62 vs 28.54). 4:2:0 reaches 3-10 % lower rates at
  quality 0 (floors 0.112/0.111/0.087 vs 0.115/0.118/0.097 bpp), which matters
  at HiFiC's rates, is 7-18 % faster, and is libavif's default and the same
  chroma format as the WebP and HEVC baselines; 68 of the 86 validation photos
  are CBSD68. Speed 6 is libavif's default; speed 4 was 0.1-0.3 dB better but
  4-5x slower (0.4-0.8 s instead of 0.08-0.12 s per encode, and a search
  encodes each image about eight times): build ``AvifCodec(speed=4)`` for a
  slower, stronger baseline. One encoder thread (``max_threads=1``).
* **JPEG XL effort 8.** The integer "quality" is libjxl's own quality scale
  (``cjxl -q``), passed as imagecodecs' ``level`` and turned into a Butteraugli
  distance by ``JxlEncoderDistanceFromQuality`` (0 -> 25, 5 -> 19.7,
  30 -> 6.4, 90 -> 1.0, 99 -> 0.19; strictly decreasing). At libjxl's default
  effort 7 the rate is not monotone: distances of 20 and more (qualities 0-4)
  switch to a mode that costs *more* bytes (CBSD68_101085: quality 0 0.229
  bpp, quality 4 0.265, quality 5 0.219) and nothing goes below ~0.21 bpp on
  these photos, above HiFiC's operating range. At effort 8 the rate grows
  monotonically with quality, quality 0 gives 0.157 / 0.165 bpp, and PSNR at
  equal bpp is within 0.05 dB of effort 7's (0.25 bpp: 22.16 vs 22.21 dB;
  0.3 bpp: 22.76 vs 22.75 dB); it is ~4x slower (0.2-0.3 s per encode).
  Quality 100 (distance 0) is left out: it takes the lossless path and is
  larger than at quality 99 by 3x. Bare codestream, no container.
* **HEVC in HEIF, 4:2:0** is our stand-in for BPG (also HEVC intra): x265
  (through libheif; decoded by libde265), pinned to libheif's x265 defaults
  (preset ``slow``, tune ``ssim``; libheif also sets aq-mode 1, psy-rd 1.0).
  libheif maps quality to x265's constant rate factor, ``crf = (100 - q) / 2``;
  quality -1 would mean lossless (and wants 4:4:4), so the search uses
  0..100, where 0 (crf 50) gives the smallest files. Tune ``psnr`` was 0.1-0.25
  dB better in PSNR at equal bpp but cannot go as low (quality 0: 0.110 /
  0.105 / 0.061 bpp instead of 0.068 / 0.074 / 0.054), so it would sit at its
  floor at HiFiC's lowest rates. No grid tiling (``tile_size=0``).
* **JPEG 4:2:0, Huffman tables optimised, not progressive**: the common web
  setting. Pillow's qualities 1 and 2 give identical files (the quantisers
  saturate at 255), and Pillow advises against qualities above 95.
* **WebP** lossy is always 4:2:0; ``method=6`` is libwebp's slowest, best mode.

:func:`match_bpp` binary-searches a codec's integer quality for the largest
quality whose real bpp does not exceed a target, and reports the codec's floor
(its lowest quality, flagged ``at_floor``) when even that is too large.
"""

from __future__ import annotations

import copy as _copy
import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import HificError

__all__ = [
    "AvifCodec",
    "BaselineCodec",
    "BaselineError",
    "BaselineInputError",
    "CODECS",
    "CodecFailedError",
    "CodecUnavailableError",
    "HevcCodec",
    "JpegCodec",
    "JxlCodec",
    "MatchResult",
    "UnknownCodecError",
    "WebpCodec",
    "available_codecs",
    "bits_per_pixel",
    "get_codec",
    "match_bpp",
]


class BaselineError(HificError):
    """Base class of the errors raised by the classical-codec baselines."""


class UnknownCodecError(BaselineError, ValueError):
    """A codec name that is not in the registry."""


class CodecUnavailableError(BaselineError, RuntimeError):
    """A known codec whose library (or the needed part of it) is not installed."""


class BaselineInputError(BaselineError, ValueError):
    """An image, quality or target bit rate a codec cannot work with."""


class CodecFailedError(BaselineError, RuntimeError):
    """A codec library failed to encode or decode (or returned the wrong format)."""


def bits_per_pixel(data: bytes, height: int, width: int) -> float:
    """Real bit rate of a file: ``8 * len(data) / (height * width)``."""
    return len(data) * 8.0 / (height * width)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Return ``rgb`` as a C-contiguous ``HxWx3`` uint8 array, or raise."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        what = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise BaselineInputError(
            f"expected an HxWx3 uint8 RGB image, got a {what}; read images with hific.image_io.read_image"
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise BaselineInputError(f"cannot encode an empty {rgb.shape[1]}x{rgb.shape[0]} image")
    return np.ascontiguousarray(rgb)


class BaselineCodec:
    """A classical codec with an integer quality knob.

    Subclasses set the class attributes and implement :meth:`_encode`,
    :meth:`_decode` and :meth:`_why_unavailable`.

    Attributes:
        name: Registry key (``"jpeg"``, ``"webp"``, ``"avif"``, ``"jxl"``, ``"hevc"``).
        label: Human-readable name with the library and chroma format, for reports.
        min_quality: Lowest quality searched (the smallest files).
        max_quality: Highest quality searched.
        install_hint: What to install when :meth:`available` is false.
        settings: JSON-serialisable description of the fixed settings, for reports.
    """

    name: str = ""
    label: str = ""
    min_quality: int = 0
    max_quality: int = 100
    install_hint: str = ""
    settings: Dict[str, Any]

    explicit_qualities: Optional[Tuple[int, ...]] = None

    @property
    def quality_range(self) -> Tuple[int, int]:
        """``(min_quality, max_quality)``, both inclusive."""
        return self.min_quality, self.max_quality

    @property
    def qualities(self) -> Sequence[int]:
        """The qualities this codec may use, ascending: :attr:`explicit_qualities` or the whole range."""
        if self.explicit_qualities is not None:
            return self.explicit_qualities
        return range(self.min_quality, self.max_quality + 1)

    def with_qualities(self, qualities: Sequence[int]) -> BaselineCodec:
        """A copy restricted to ``qualities`` (named ``name@q1,q2,...``), e.g. for a rate curve.

        Raises:
            BaselineInputError: for an empty list or a quality outside :attr:`quality_range`.
        """
        chosen = tuple(sorted({int(q) for q in qualities}))
        bad = [q for q in chosen if not self.min_quality <= q <= self.max_quality]
        if not chosen or bad:
            raise BaselineInputError(f"{self.name}: qualities must be a non-empty list within "
                                     f"{self.min_quality}..{self.max_quality}, got {list(qualities)}")
        copy = _copy.copy(self)
        base = self.name.split("@", 1)[0]
        copy.name = f"{base}@{','.join(str(q) for q in chosen)}"
        copy.explicit_qualities = chosen
        copy.settings = {**self.settings, "qualities": list(chosen)}
        return copy

    def unavailable_reason(self) -> Optional[str]:
        """Why the codec cannot run here (with the install hint), or None when it can."""
        try:
            reason = self._why_unavailable()
        except Exception as exc:  # an import or probe that fails in an unforeseen way
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return None
        return f"{self.label} is not available ({reason}); install it with: {self.install_hint}"

    def available(self) -> bool:
        """Whether the codec can encode and decode here (see :meth:`unavailable_reason`)."""
        return self.unavailable_reason() is None

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        """Encode an image to the bytes of a complete, standalone file.

        Args:
            rgb: ``HxWx3`` uint8 image.
            quality: Integer in :attr:`quality_range`; higher means larger files.

        Returns:
            The file's bytes.

        Raises:
            BaselineInputError: for a bad image or a quality out of range.
            CodecUnavailableError: when the codec's library is missing.
            CodecFailedError: when the library fails.
        """
        rgb = _check_rgb(rgb)
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
            raise BaselineInputError(f"{self.name}: quality must be an integer, got {quality!r}")
        quality = int(quality)
        if quality not in self.qualities:
            allowed = (f"{self.min_quality}..{self.max_quality}" if self.explicit_qualities is None
                       else ",".join(str(q) for q in self.explicit_qualities))
            raise BaselineInputError(
                f"{self.name}: quality {quality} is outside {allowed}; use a quality in that range"
            )
        self._require()
        try:
            data = bytes(self._encode(rgb, quality))
        except HificError:
            raise
        except Exception as exc:
            raise CodecFailedError(f"{self.label} failed to encode a {rgb.shape[1]}x{rgb.shape[0]} image "
                                   f"at quality {quality}: {exc}") from exc
        if not data:
            raise CodecFailedError(f"{self.label} returned an empty file at quality {quality}")
        return data

    def decode(self, data: bytes) -> np.ndarray:
        """Decode the bytes of a file written by :meth:`encode`.

        Returns:
            The ``HxWx3`` uint8 image.

        Raises:
            CodecFailedError: when the data is not a readable file of this format.
        """
        self._require()
        try:
            rgb = self._decode(bytes(data))
        except HificError:
            raise
        except Exception as exc:
            raise CodecFailedError(f"{self.label} cannot decode these {len(data)} bytes: {exc}") from exc
        rgb = np.asarray(rgb)
        if rgb.ndim == 3 and rgb.shape[2] == 4:
            rgb = rgb[..., :3]
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise CodecFailedError(f"{self.label} decoded a {rgb.dtype} array of shape {rgb.shape}, not HxWx3 uint8")
        return np.ascontiguousarray(rgb)

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise CodecUnavailableError(reason)

    def _why_unavailable(self) -> Optional[str]:
        raise NotImplementedError

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} quality {self.min_quality}..{self.max_quality} {self.settings}>"


# --------------------------------------------------------------------------- Pillow codecs


def _pillow_save(rgb: np.ndarray, fmt: str, **params: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **params)
    return buf.getvalue()


def _pillow_load(data: bytes, fmt: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.format != fmt:
            raise CodecFailedError(f"expected a {fmt} file, Pillow read it as {img.format}")
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _pillow_feature(feature: str) -> Optional[str]:
    try:
        from PIL import features
    except ImportError:
        return "Pillow is not installed"
    if not features.check(feature):
        return f"this Pillow build has no {feature} support"
    return None


class JpegCodec(BaselineCodec):
    """Baseline JPEG through Pillow (libjpeg-turbo): 4:2:0, optimised Huffman tables."""

    name = "jpeg"
    label = "JPEG (Pillow, 4:2:0)"
    min_quality = 1
    max_quality = 95
    install_hint = "pip install pillow"

    def __init__(self) -> None:
        self.settings = {"library": "Pillow / libjpeg-turbo", "quality": [self.min_quality, self.max_quality],
                         "subsampling": "4:2:0", "optimize": True, "progressive": False}

    def _why_unavailable(self) -> Optional[str]:
        return _pillow_feature("jpg")

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        return _pillow_save(rgb, "JPEG", quality=quality, subsampling="4:2:0", optimize=True, progressive=False)

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_load(data, "JPEG")


class WebpCodec(BaselineCodec):
    """Lossy WebP through Pillow (libwebp), ``method=6``."""

    name = "webp"
    label = "WebP (Pillow, lossy, 4:2:0)"
    min_quality = 0
    max_quality = 100
    install_hint = "pip install pillow  (a build with WebP support)"

    def __init__(self) -> None:
        self.settings = {"library": "Pillow / libwebp", "quality": [self.min_quality, self.max_quality],
                         "lossless": False, "method": 6, "subsampling": "4:2:0"}

    def _why_unavailable(self) -> Optional[str]:
        return _pillow_feature("webp")

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        return _pillow_save(rgb, "WEBP", quality=quality, method=6, lossless=False, exact=False)

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_load(data, "WEBP")


class AvifCodec(BaselineCodec):
    """AVIF through Pillow's built-in AVIF plugin (libavif with libaom).

    Args:
        subsampling: ``"4:2:0"`` (the default; see the module docstring), ``"4:2:2"`` or ``"4:4:4"``.
        speed: libavif speed, 0 (slowest, best) to 10; 6 is libavif's default.
    """

    name = "avif"
    min_quality = 0
    max_quality = 100
    install_hint = "pip install 'pillow>=11.3'  (a build with AVIF support)"

    def __init__(self, subsampling: str = "4:2:0", speed: int = 6) -> None:
        if subsampling not in ("4:4:4", "4:2:2", "4:2:0"):
            raise BaselineInputError(f"AVIF subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {subsampling!r}")
        if not 0 <= int(speed) <= 10:
            raise BaselineInputError(f"AVIF speed must be 0..10, got {speed!r}")
        self.subsampling = subsampling
        self.speed = int(speed)
        self.label = f"AVIF (libaom, {subsampling})"
        self.settings = {"library": "Pillow AVIF plugin / libavif + libaom", "quality": [0, 100],
                         "subsampling": subsampling, "speed": self.speed, "range": "full", "codec": "aom",
                         "max_threads": 1}

    def _why_unavailable(self) -> Optional[str]:
        missing = _pillow_feature("avif")
        if missing is not None:
            return missing
        from PIL import _avif

        if not _avif.encoder_codec_available("aom"):
            return "this Pillow's libavif has no libaom encoder"
        return None

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        # One thread: libaom is then bit-exact across machines and runs, and the
        # evaluation encodes many images anyway.
        return _pillow_save(rgb, "AVIF", quality=quality, speed=self.speed, subsampling=self.subsampling,
                            codec="aom", range="full", max_threads=1)

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_load(data, "AVIF")


# --------------------------------------------------------------------------- JPEG XL


def _jxl_distance(quality: int) -> float:
    """libjxl's ``JxlEncoderDistanceFromQuality`` (cjxl's ``-q`` to Butteraugli distance)."""
    q = float(quality)
    if q >= 100.0:
        return 0.0
    if q >= 30.0:
        return 0.1 + (100.0 - q) * 0.09
    return 53.0 / 3000.0 * q * q - 23.0 / 20.0 * q + 25.0


class JxlCodec(BaselineCodec):
    """JPEG XL through imagecodecs (libjxl), a bare codestream (``FF 0A``).

    The integer quality is passed as imagecodecs' ``level``, which libjxl turns
    into a Butteraugli distance exactly like ``cjxl -q`` (see :func:`_jxl_distance`).

    Args:
        effort: libjxl effort 1..10 (8 by default; see the module docstring).
    """

    name = "jxl"
    min_quality = 0
    max_quality = 99
    install_hint = "pip install imagecodecs==2026.1.14"

    def __init__(self, effort: int = 8) -> None:
        if not 1 <= int(effort) <= 10:
            raise BaselineInputError(f"JPEG XL effort must be 1..10, got {effort!r}")
        self.effort = int(effort)
        self.label = f"JPEG XL (libjxl, effort {self.effort})"
        self.settings = {"library": "imagecodecs / libjxl", "quality": [self.min_quality, self.max_quality],
                         "quality_to_distance": "JxlEncoderDistanceFromQuality (cjxl -q)",
                         "distance_range": [round(_jxl_distance(self.max_quality), 3),
                                            round(_jxl_distance(self.min_quality), 3)],
                         "effort": self.effort, "container": False, "numthreads": 1}

    def _why_unavailable(self) -> Optional[str]:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed"
        if not getattr(imagecodecs, "JPEGXL", None) or not imagecodecs.JPEGXL.available:
            return "this imagecodecs build has no JPEG XL codec"
        return None

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        import imagecodecs

        return imagecodecs.jpegxl_encode(rgb, level=quality, effort=self.effort, lossless=False,
                                         usecontainer=False, numthreads=1)

    def _decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        rgb = imagecodecs.jpegxl_decode(data, numthreads=1)
        if rgb.ndim == 2:  # a grey image
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        return rgb


# --------------------------------------------------------------------------- HEVC in HEIF


class HevcCodec(BaselineCodec):
    """HEVC intra in a HEIF file through pillow-heif (libheif + x265): our BPG stand-in.

    pillow-heif's quality (0..100; -1 would be lossless) becomes x265's constant
    rate factor inside libheif; 0 gives the smallest files.
    """

    name = "hevc"
    label = "HEVC/HEIF (x265, 4:2:0)"
    min_quality = 0
    max_quality = 100
    install_hint = "pip install pillow-heif"

    def __init__(self) -> None:
        self.settings = {"library": "pillow-heif / libheif + x265 (decoder libde265)",
                         "quality": [self.min_quality, self.max_quality], "chroma": "420",
                         "x265": {"preset": "slow", "tune": "ssim", "crf": "(100 - quality) / 2"},
                         "tile_size": 0,
                         "stand_in_for": "BPG"}

    def _why_unavailable(self) -> Optional[str]:
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed"
        info = pillow_heif.libheif_info()
        if "x265" not in (info.get("encoders") or {}):
            return f"libheif {info.get('libheif', '?')} in pillow-heif has no x265 HEVC encoder"
        if not info.get("decoders"):
            return "libheif in pillow-heif has no HEVC decoder"
        return None

    def _encode(self, rgb: np.ndarray, quality: int) -> bytes:
        import pillow_heif

        buf = io.BytesIO()
        h, w = rgb.shape[:2]
        pillow_heif.encode("RGB", (w, h), rgb.tobytes(), buf, quality=quality, chroma="420", tile_size=0,
                           save_nclx_profile=True, enc_params={"preset": "slow", "tune": "ssim"})
        return buf.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return np.asarray(heif)


# --------------------------------------------------------------------------- registry

_FACTORIES: Dict[str, Callable[[], BaselineCodec]] = {
    "jpeg": JpegCodec,
    "webp": WebpCodec,
    "avif": AvifCodec,
    "jxl": JxlCodec,
    "hevc": HevcCodec,
}

CODECS: Dict[str, BaselineCodec] = {name: make() for name, make in _FACTORIES.items()}
"""The registry: one codec object per name, with the settings described above."""


def get_codec(name: str) -> BaselineCodec:
    """Look a codec up by name (case-insensitive), available or not.

    Raises:
        UnknownCodecError: for a name not in :data:`CODECS`; the message lists the known names.
    """
    key = str(name).strip().lower()
    if key not in CODECS:
        raise UnknownCodecError(f"unknown baseline codec {name!r}; choose from: {', '.join(CODECS)}")
    return CODECS[key]


def available_codecs(names: Sequence[str]) -> List[BaselineCodec]:
    """The codec objects for ``names``, in order, without duplicates.

    Args:
        names: Codec names such as ``("jpeg", "webp", "avif", "jxl", "hevc")``; a
            single comma-separated string is also accepted.

    Raises:
        UnknownCodecError: for a name not in the registry (the known ones are listed).
        CodecUnavailableError: for a known codec that cannot run here; the message
            names the package to install.
    """
    from .codecs import build_codecs, split_specs  # which also knows the learned baselines

    return build_codecs(split_specs(names) if isinstance(names, str) else names)


# --------------------------------------------------------------------------- rate matching


@dataclass(frozen=True)
class MatchResult:
    """One codec's file for one image at (at most) a target bit rate.

    Attributes:
        codec: The codec's registry name.
        quality: The quality used.
        bpp: Real bits per pixel of ``data``.
        data: The complete file's bytes.
        rgb: ``data`` decoded, ``HxWx3`` uint8 (read-only).
        at_floor: True when even the lowest quality exceeded the target; then
            ``quality`` is the lowest quality and ``bpp > target_bpp``.
        encodes: How many distinct qualities were encoded during the search.
        target_bpp: The target the search was given.
    """

    codec: str
    quality: int
    bpp: float
    data: bytes = field(repr=False)
    rgb: np.ndarray = field(repr=False, compare=False)
    at_floor: bool
    encodes: int
    target_bpp: float


def match_bpp(codec: BaselineCodec, rgb: np.ndarray, target_bpp: float, lookahead: int = 2,
              cache: Optional[Dict[int, bytes]] = None) -> MatchResult:
    """Find the largest quality whose real bpp does not exceed ``target_bpp``.

    A binary search over the codec's qualities (:attr:`BaselineCodec.qualities`:
    its integer range, or the list it was restricted to), assuming that the
    rate grows with quality; each quality is encoded at most once. Because real
    encoders are only *nearly* monotone, after the search converges the next
    ``lookahead`` qualities above the first failing one are also tried, and the
    search resumes above any of them that fits. The returned point always
    satisfies ``bpp <= target_bpp`` and, below the top of the range, the next
    quality up was encoded and exceeded the target.

    When even the lowest quality exceeds the target, that lowest-quality file
    is returned with ``at_floor=True`` (it is not dropped).

    Args:
        codec: A codec object, e.g. from :func:`available_codecs`.
        rgb: ``HxWx3`` uint8 image.
        target_bpp: Target rate in bits per pixel (positive, finite).
        lookahead: Extra qualities checked above the boundary (0 for a plain binary search).
        cache: Files already encoded for this image, by quality; filled in. Pass the same
            dict for several targets on one image to encode each quality once.

    Returns:
        The chosen file, its decoded image and the search's bookkeeping.

    Raises:
        BaselineInputError: for a bad image or target.
        CodecUnavailableError: when the codec cannot run here.
        CodecFailedError: when the codec library fails.
    """
    rgb = _check_rgb(rgb)
    try:
        target = float(target_bpp)
    except (TypeError, ValueError):
        raise BaselineInputError(f"target bpp must be a number, got {target_bpp!r}") from None
    if not math.isfinite(target) or target <= 0:
        raise BaselineInputError(f"target bpp must be positive and finite, got {target_bpp!r}")
    if lookahead < 0:
        raise BaselineInputError(f"lookahead must be >= 0, got {lookahead}")
    h, w = rgb.shape[:2]
    cache = {} if cache is None else cache
    qs = list(codec.qualities)  # searched by index, so a list with gaps works too

    def rate(i: int) -> float:
        if qs[i] not in cache:
            cache[qs[i]] = codec.encode(rgb, qs[i])
        return bits_per_pixel(cache[qs[i]], h, w)

    def result(i: int, at_floor: bool) -> MatchResult:
        q = qs[i]
        data = cache[q]
        decoded = codec.decode(data)
        if decoded.shape != rgb.shape:
            raise CodecFailedError(f"{codec.label} decoded a {decoded.shape[1]}x{decoded.shape[0]} image from a "
                                   f"{w}x{h} one at quality {q}")
        decoded.setflags(write=False)
        return MatchResult(codec=codec.name, quality=q, bpp=bits_per_pixel(data, h, w), data=data, rgb=decoded,
                           at_floor=at_floor, encodes=len(cache), target_bpp=target)

    lo, hi = 0, len(qs) - 1
    if rate(lo) > target:
        return result(lo, at_floor=True)
    if rate(hi) <= target:
        return result(hi, at_floor=False)
    good, bad = lo, hi  # invariant: rate(good) <= target < rate(bad), good < bad
    while True:
        while bad - good > 1:
            mid = (good + bad) // 2
            if rate(mid) <= target:
                good = mid
            else:
                bad = mid
        # bad == good + 1 failed; look a little further up for a non-monotone dip.
        above = [i for i in range(bad + 1, min(bad + lookahead, hi - 1) + 1) if rate(i) <= target]
        if not above:
            break
        good = max(above)
        bad = min(i for i in range(good + 1, hi + 1) if qs[i] in cache and rate(i) > target)
    if not (rate(good) <= target < rate(good + 1)):  # pragma: no cover - guaranteed by the invariant
        raise CodecFailedError(f"{codec.name}: rate search ended at an inconsistent quality {qs[good]}")
    return result(good, at_floor=False)
