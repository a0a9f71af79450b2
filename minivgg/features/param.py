"""The image as something to optimise: its parameterisation, from free numbers to the network's input.

Legend: N batch (one image per channel optimised), H, W height and width, F = W // 2 + 1 the
frequencies rfft keeps along W, 3 colours.

Gradient ascent on raw pixels finds high-frequency patterns that fire a channel but look like noise
to a person. Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017), and their Lucid
library (github.com/tensorflow/lucid, Apache 2.0) fix most of that by changing what is optimised.
The chain, each step a function here with its backward beside it:

    spectrum p (2, N, 3, H, F)  --fourier_image-->  (N, H, W, 3)  decorrelated colours, any values
        --decorrelate_colours-->  (N, H, W, 3)  correlated RGB, any values
        --sigmoid-->  (N, H, W, 3)  RGB in (0, 1)  [the robustness transforms act here: transforms.py]
        --to_network_input-->  (N, H', W', 3)  BGR 0..255 minus the ImageNet mean: what VGG16 takes

- Fourier (Lucid ``param/spatial.py``, ``fft_image``): the free numbers are the real and imaginary
  parts of the image's 2-D spectrum, each frequency f scaled by 1 / max(f, 1 / max(H, W)) ** decay
  (decay = 1), times sqrt(H * W), and the image divided by 4. Natural images have a ~1/f spectrum,
  so equal steps on every coefficient move the image as much at low as at high frequency; gradient
  steps stop favouring high-frequency noise.
- Colour decorrelation (Lucid ``param/color.py``): the three channels are coordinates in a
  decorrelated colour space, mapped to RGB by the square root of ImageNet's colour correlation
  matrix (``COLOUR_SQRT``, Lucid's ``color_correlation_svd_sqrt``), its columns scaled so the largest
  has norm 1.
- Sigmoid (Lucid ``to_valid_rgb(..., sigmoid=True)``): squashes any value into the valid (0, 1).
- The naive twin, ``pixel``: the free numbers are the pixels themselves, then the sigmoid; no
  Fourier, no colour decorrelation. It shows what the tricks buy.

Every step is linear except the sigmoid, and each backward is written out: the adjoint of numpy's
``irfft2`` is ``rfft2`` with the half-spectrum's doubled columns counted twice (see
``fourier_image_backward``); the colour map's backward is its transpose; the sigmoid's is y (1 - y);
preprocessing's is 255 times the channel flip. The tests hold each to central differences.
"""
import numpy as np

from ..errors import MinivggError
from ..files.preprocess import IMAGENET_MEAN_BGR

# Lucid, param/color.py: the square root of ImageNet's RGB colour correlation matrix (from its SVD).
COLOUR_SQRT = np.array([[0.26, 0.09, 0.02],
                        [0.27, 0.00, -0.05],
                        [0.27, -0.09, 0.03]], np.float32)  # (3 RGB, 3 decorrelated)
COLOUR = COLOUR_SQRT / np.max(np.linalg.norm(COLOUR_SQRT, axis=0))  # columns scaled: the largest has norm 1
DECAY = 1.0  # Lucid's decay_power: the spectrum is scaled by 1 / f ** DECAY
INIT_SD = 0.01  # Lucid's sd: the standard deviation of the random starting coefficients (or pixels)
PARAMS = ("fourier", "pixel")  # "fourier": spectrum + colour decorrelation + sigmoid; "pixel": pixels + sigmoid


# ---- Fourier ------------------------------------------------------------------------------------


def frequencies(h, w):
    """|f| of each coefficient of ``np.fft.rfft2`` of an (h, w) image: (h, w // 2 + 1), cycles per pixel."""
    fy = np.fft.fftfreq(h)[:, None]  # (h, 1): 0, 1/h, ..., then negative frequencies
    fx = np.fft.rfftfreq(w)[None, :]  # (1, F): 0, 1/w, ..., 1/2 (rfft keeps F = w // 2 + 1)
    return np.sqrt(fx * fx + fy * fy)  # (h, F)


def spectrum_scale(h, w, decay=DECAY):
    """Lucid's per-coefficient scale: sqrt(h * w) / max(|f|, 1 / max(h, w)) ** decay, (h, F) float64.

    1 / |f| ** decay gives the free numbers a natural image's 1/f spectrum; the floor 1 / max(h, w)
    keeps the constant term (f = 0) finite; sqrt(h * w) makes irfft2 (which divides by h * w) roughly
    unitary, so a learning rate suits both this and the pixel parameterisation (Lucid's comment).
    """
    return np.sqrt(h * w) / np.maximum(frequencies(h, w), 1.0 / max(h, w)) ** decay


def fourier_image(p, h, w):
    """Spectrum coefficients -> images.

    Inputs:
    - p: (2, N, 3, h, F) float32, real and imaginary parts of each channel's rfft2 spectrum, F = w // 2 + 1
    - h, w: the image size (w is needed: F is the same for w = 2F - 2 and 2F - 1)
    Returns:
    - img: (N, h, w, 3) float32, = irfft2(scale * (p[0] + i p[1])) / 4, channels last
    """
    p = np.asarray(p)
    _check_spectrum(p, h, w)
    spectrum = spectrum_scale(h, w) * (p[0] + 1j * p[1])  # (N, 3, h, F) complex128
    img = np.fft.irfft2(spectrum, s=(h, w)) / 4  # (N, 3, h, w); Lucid's "/ 4" (its own TODO: a magic constant)
    return np.ascontiguousarray(img.transpose(0, 2, 3, 1), dtype=_dtype(p))  # (N, 3, h, w) -> (N, h, w, 3)


def fourier_image_backward(dimg):
    """dL/dp from dL/dimg, for ``img = fourier_image(p, h, w)``.

    Inputs:
    - dimg: (N, h, w, 3), dL/dimg
    Returns:
    - dp: (2, N, 3, h, F) float32

    irfft2 is linear in (Re, Im) of its input. Along H it is the complex inverse DFT, (1/h) conj(D):
    its adjoint is (1/h) D, a forward DFT. Along W, irfft builds x[n] = (1/w) sum_l c_l Re(Z_l
    e^{2 pi i l n / w}) from the half spectrum, c_l = 1 for l = 0 and (w even) l = w / 2, else 2
    (those columns stand for themselves and their mirror image). Differentiating,
    dL/dRe Z_l + i dL/dIm Z_l = (c_l / w) rfft(g)_l. So dL/dZ = c * rfft2(g) / (h * w), then the
    chain through the real scale and the / 4.
    """
    dimg = np.asarray(dimg)
    if dimg.ndim != 4 or dimg.shape[3] != 3:
        raise MinivggError(f"dL/dimg must be (N, H, W, 3), got {dimg.shape}")
    _, h, w, _ = dimg.shape
    g = dimg.transpose(0, 3, 1, 2).astype(np.float64)  # (N, h, w, 3) -> (N, 3, h, w)
    counts = np.full(w // 2 + 1, 2.0)  # c_l: (F,)
    counts[0] = 1.0
    if w % 2 == 0:
        counts[-1] = 1.0  # the Nyquist column stands alone when w is even
    dz = np.fft.rfft2(g) * (counts / (h * w))  # (N, 3, h, F) complex: dL/dRe + i dL/dIm of the scaled spectrum
    dz *= spectrum_scale(h, w) / 4
    return np.stack([dz.real, dz.imag]).astype(_dtype(dimg))  # (2, N, 3, h, F)


def fourier_from_image(img):
    """The spectrum whose ``fourier_image`` is ``img``: the inverse, for starting from a photo.

    img: (N, h, w, 3) -> p: (2, N, 3, h, F) float32. rfft2 and irfft2 are inverses on real images;
    the imaginary parts irfft2 ignores (the constant and Nyquist terms) come out 0.
    """
    img = np.asarray(img, np.float64)
    _, h, w, _ = img.shape
    spectrum = np.fft.rfft2(4 * img.transpose(0, 3, 1, 2)) / spectrum_scale(h, w)  # (N, 3, h, F)
    return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)


def random_spectrum(rng, h, w, sd=INIT_SD):
    """Lucid's start: every coefficient normal(0, sd). Returns (2, 1, 3, h, F) float32 (one image)."""
    return rng.normal(0.0, sd, (2, 1, 3, h, w // 2 + 1)).astype(np.float32)


def _dtype(a):
    """float64 stays float64 (for the gradient checks); everything else computes in float32."""
    return np.float64 if np.asarray(a).dtype == np.float64 else np.float32


def _check_spectrum(p, h, w):
    if p.ndim != 5 or p.shape[0] != 2 or p.shape[2] != 3 or p.shape[3:] != (h, w // 2 + 1):
        raise MinivggError(f"a spectrum for {h}x{w} images is (2, N, 3, {h}, {w // 2 + 1}), got {p.shape}")


# ---- colours ------------------------------------------------------------------------------------


def decorrelate_colours(t):
    """Decorrelated colour coordinates -> RGB. t: (N, H, W, 3) -> (N, H, W, 3), rgb = t @ COLOUR^T."""
    return (t.reshape(-1, 3) @ COLOUR.T.astype(_dtype(t))).reshape(t.shape)  # (N*H*W, 3) @ (3, 3) -> (N, H, W, 3)


def decorrelate_colours_backward(drgb):
    """dL/dt = dL/drgb @ COLOUR, the transpose of the forward map. (N, H, W, 3) -> (N, H, W, 3)."""
    return (drgb.reshape(-1, 3) @ COLOUR.astype(_dtype(drgb))).reshape(drgb.shape)  # (N*H*W, 3) @ (3, 3)


def correlate_colours(rgb):
    """The inverse of ``decorrelate_colours``: RGB -> decorrelated coordinates (for a photo start)."""
    return (rgb.reshape(-1, 3) @ np.linalg.inv(COLOUR).T).reshape(rgb.shape).astype(np.float32)  # (N*H*W, 3)


# ---- sigmoid ------------------------------------------------------------------------------------


def sigmoid(t):
    """1 / (1 + e^-t), elementwise, float32: any value -> (0, 1)."""
    return (0.5 * (1.0 + np.tanh(0.5 * t))).astype(_dtype(t))  # = 1 / (1 + exp(-t)), without overflow


def sigmoid_backward(y, dy):
    """dL/dt = dL/dy * y * (1 - y), given the forward output y = sigmoid(t)."""
    return (dy * y * (1.0 - y)).astype(_dtype(dy))


def logit(y, margin=0.01):
    """The inverse of ``sigmoid``, y clipped to [margin, 1 - margin] first (0 and 1 have no finite logit)."""
    y = np.clip(y, margin, 1.0 - margin)
    return np.log(y / (1.0 - y)).astype(np.float32)


# ---- the network's input ------------------------------------------------------------------------


def to_network_input(rgb):
    """RGB in [0, 1] -> what VGG16 was trained on: BGR 0..255 minus the ImageNet mean pixel.

    rgb: (N, H, W, 3) -> (N, H, W, 3) float32, as ``preprocess_input(255 * rgb)`` but not in place.
    """
    return (255.0 * rgb[..., ::-1] - np.asarray(IMAGENET_MEAN_BGR, np.float32)).astype(_dtype(rgb))


def to_network_input_backward(dx):
    """dL/drgb = 255 * dL/dx with the channels flipped back (BGR -> RGB)."""
    return np.ascontiguousarray(255.0 * dx[..., ::-1], dtype=_dtype(dx))


# ---- the whole parameterisation -------------------------------------------------------------------


class Image:
    """One batch of images being optimised: the free numbers ``p`` and the way to images.

    - kind: "fourier" (p: (2, N, 3, H, F) spectrum, colour decorrelation, sigmoid) or
      "pixel" (p: (N, H, W, 3) pixels, sigmoid), the naive twin
    ``rgb()`` returns the images (N, H, W, 3) in (0, 1) and remembers what ``backward`` needs;
    ``backward(drgb)`` returns dL/dp for the images of the last ``rgb()`` call.
    """

    def __init__(self, kind, p, h, w):
        if kind not in PARAMS:
            raise MinivggError(f"unknown parameterisation {kind!r}; choose one of {', '.join(PARAMS)}")
        self.kind, self.p, self.h, self.w = kind, np.ascontiguousarray(p, np.float32), h, w
        self._y = None

    @classmethod
    def random(cls, kind, rngs, h, w):
        """Lucid's random start, one image per generator in ``rngs`` (so image i does not depend on the others)."""
        if kind == "fourier":
            p = np.concatenate([random_spectrum(rng, h, w) for rng in rngs], axis=1)  # (2, N, 3, h, F)
        else:
            p = np.stack([rng.normal(0.0, INIT_SD, (h, w, 3)) for rng in rngs]).astype(np.float32)  # (N, h, w, 3)
        return cls(kind, p, h, w)

    @classmethod
    def from_rgb(cls, kind, rgb):
        """The parameters whose images are ``rgb`` (N, H, W, 3) in [0, 1] (clipped to [0.01, 0.99])."""
        _, h, w, _ = rgb.shape
        t = logit(rgb)
        p = fourier_from_image(correlate_colours(t)) if kind == "fourier" else t
        return cls(kind, p, h, w)

    def rgb(self):
        if self.kind == "fourier":
            t = decorrelate_colours(fourier_image(self.p, self.h, self.w))  # (N, H, W, 3)
        else:
            t = self.p
        self._y = sigmoid(t)
        return self._y

    def backward(self, drgb):
        dt = sigmoid_backward(self._y, drgb)
        if self.kind == "fourier":
            return fourier_image_backward(decorrelate_colours_backward(dt))  # (2, N, 3, H, F)
        return dt
