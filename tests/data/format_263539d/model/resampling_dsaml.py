"""Band-limited resampling in torch alone, with memory bounded for any pair of sample rates.

The filter is torchaudio.functional.resample's default (a Hann-windowed sinc, lowpass_filter_width=6,
rolloff=0.99), so features stay those of the torchaudio front end the model was trained with. torchaudio builds
one polyphase kernel of `new x (orig + 2 * width)` values for the gcd-reduced rates, which for coprime rates
(44101 -> 44100 Hz) is 44100 x 44115 floats, 7.8 GB. Here each output sample `j` only ever uses the
`taps` inputs within the filter's reach of its position `j * orig / new`, so the kernel is a table of
`new x taps` weights (2.5 MB for 44101 -> 44100 Hz; at most ~45 MB, 768 kHz -> 44.1 kHz), applied either as torchaudio's strided
convolution (when that kernel is small: the fast path for common rate pairs) or by gathering each output's
taps in chunks. Both compute the same sum; `ResamplerStream` runs it block by block with identical output.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MAX_SAMPLING_RATE", "MIN_SAMPLING_RATE", "Resampler", "ResamplerStream", "check_sampling_rate"]

# Below 1 kHz (a 500 Hz band) no music is left to describe; 768 kHz is the highest PCM rate audio interfaces
# record. Outside these, a "sample rate" is a corrupt header or a mistake, not audio.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 768_000

# The strided convolution wins while its kernel is small; beyond this many values it is mostly zeros
# (a kernel row spans `orig` inputs, only `taps` of which are in reach) and gathering the taps is cheaper.
_CONV_KERNEL_LIMIT = 1 << 18
# Values (outputs x taps) gathered at once: bounds the working memory of one chunk to ~50 MB.
_GATHER_CHUNK = 1 << 22


def check_sampling_rate(rate, name: str = "audio") -> int:
    """`rate` as an int, or a one-line ValueError naming `name` if it is not a whole number of Hz in
    [MIN_SAMPLING_RATE, MAX_SAMPLING_RATE]."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: sample rate must be a number of Hz, got {rate!r}") from None
    if not value.is_integer():
        raise ValueError(f"{name}: sample rate must be a whole number of Hz, got {rate!r}")
    if not MIN_SAMPLING_RATE <= value <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{name}: sample rate {int(value)} Hz is outside the supported {MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE} Hz"
        )
    return int(value)


class Resampler:
    """Resample `[..., samples]` float tensors from `orig_freq` to `new_freq` Hz.

    The output has `ceil(samples * new / orig)` samples, as torchaudio's; samples beyond the ends count as zeros.
    """

    def __init__(self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
        orig_freq = check_sampling_rate(orig_freq, "resampler input")
        new_freq = check_sampling_rate(new_freq, "resampler output")
        if lowpass_filter_width <= 0 or not 0 < rolloff <= 1:
            raise ValueError(f"need lowpass_filter_width > 0 and 0 < rolloff <= 1, got {lowpass_filter_width}, {rolloff}")
        g = math.gcd(orig_freq, new_freq)
        self.orig, self.new = orig_freq // g, new_freq // g  # the period: every `new` outputs per `orig` inputs
        self.identity = self.orig == self.new
        base = min(self.orig, self.new) * rolloff
        reach = lowpass_filter_width * self.orig / base  # the filter's half-length, in input samples
        phases = np.arange(self.new, dtype=np.int64)
        # taps of output phase p: inputs first[p] + (0 .. taps-1) relative to block start k * orig
        self.first = np.ceil(phases * self.orig / self.new - reach).astype(np.int64)
        self.taps = int(math.floor(2 * reach)) + 2
        offsets = self.first[:, None] + np.arange(self.taps)[None, :]
        # the kernel's argument in torchaudio's units: base * (n / orig - p / new), exact integers first
        t = (offsets * self.new - phases[:, None] * self.orig) / (self.orig * self.new) * base
        inside = np.abs(t) <= lowpass_filter_width
        t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
        window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
        sinc = np.sinc(t)  # sin(pi t) / (pi t), 1 at 0
        self.weights = torch.from_numpy(np.where(inside, sinc * window * base / self.orig, 0.0).astype(np.float32))
        self.first_t = torch.from_numpy(self.first)
        self.reach = reach
        span = int(self.first.max() - self.first.min()) + self.taps
        self.use_conv = self.new * span <= _CONV_KERNEL_LIMIT
        if self.use_conv:
            kernel = torch.zeros(self.new, 1, span)
            cols = torch.from_numpy(offsets - self.first.min())
            kernel[:, 0].scatter_(1, cols, self.weights)
            self.kernel, self.kernel_start = kernel, int(self.first.min())
            self.chunk = max(1, (1 << 20) // self.new) * self.new  # whole periods, ~24 s at 44.1 kHz
        else:
            self.chunk = max(1, _GATHER_CHUNK // self.taps)

    def output_length(self, num_samples: int) -> int:
        return -(-num_samples * self.new // self.orig)  # ceil, in exact integers

    def last_input(self, j: int) -> int:
        """Index of the last input sample any output before `j` can use (an upper bound)."""
        return (j * self.orig) // self.new + int(math.ceil(self.reach)) + 1

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return waveform
        return self.segment(waveform, 0, 0, self.output_length(waveform.shape[-1]))

    def stream(self) -> ResamplerStream:
        return ResamplerStream(self)

    def segment(self, x: torch.Tensor, x_start: int, j0: int, j1: int) -> torch.Tensor:
        """Outputs `[j0, j1)` from `x[..., m]`, the input samples `x_start .. x_start + m - 1` (zeros elsewhere)."""
        shape = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1]).float()
        pieces = []
        a = j0
        while a < j1:
            # chunks on a fixed grid of output indices: a streamed song is computed in the very same pieces
            # as the whole song, so the two agree exactly, not only up to rounding
            b = min(j1, (a // self.chunk + 1) * self.chunk)
            pieces.append(self._conv(x, x_start, a, b) if self.use_conv else self._gather(x, x_start, a, b))
            a = b
        out = torch.cat(pieces, dim=-1) if pieces else x.new_zeros(x.shape[0], 0)
        return out.reshape(*shape, -1)

    @staticmethod
    def _window(x: torch.Tensor, x_start: int, lo: int, hi: int) -> torch.Tensor:
        """Input samples `[lo, hi)` as a tensor, zeros where `x` does not cover them."""
        a, b = max(lo, x_start), min(hi, x_start + x.shape[-1])
        if b <= a:
            return x.new_zeros(x.shape[0], hi - lo)
        return F.pad(x[:, a - x_start : b - x_start], (a - lo, hi - b))

    def _conv(self, x: torch.Tensor, x_start: int, j0: int, j1: int) -> torch.Tensor:
        # j0 is a multiple of `new` (whole periods), so torchaudio's strided convolution applies as is
        k0, k1 = j0 // self.new, -(-j1 // self.new)
        lo = k0 * self.orig + self.kernel_start
        hi = (k1 - 1) * self.orig + self.kernel_start + self.kernel.shape[-1]
        out = F.conv1d(self._window(x, x_start, lo, hi)[:, None], self.kernel.to(x.device), stride=self.orig)
        return out.transpose(1, 2).reshape(x.shape[0], -1)[:, : j1 - j0]

    def _gather(self, x: torch.Tensor, x_start: int, j0: int, j1: int) -> torch.Tensor:
        j = torch.arange(j0, j1, dtype=torch.int64, device=x.device)
        phase = j % self.new
        start = (j // self.new) * self.orig + self.first_t.to(x.device)[phase]  # first tap of each output
        lo, hi = int(start[0]), int(start[-1]) + self.taps
        # each output's taps are one row of the sliding-window view (no copy); selecting whole rows is far
        # cheaper than gathering single values
        rows = self._window(x, x_start, lo, hi).unfold(-1, self.taps, 1).index_select(1, start - lo)
        return (rows * self.weights.to(x.device).index_select(0, phase)).sum(-1)


class ResamplerStream:
    """The same resampling over consecutive blocks: `push(block)` returns the outputs that block completes,
    `flush()` the rest. Concatenated, they equal `Resampler(...)(whole)` (up to float rounding); memory holds
    one block plus the filter's reach."""

    def __init__(self, resampler: Resampler):
        self.resampler = resampler
        self.buffer: torch.Tensor | None = None  # input samples from `buffer_start` on
        self.buffer_start = 0
        self.received = 0
        self.emitted = 0

    def _emit(self, end: int) -> torch.Tensor:
        r = self.resampler
        out = r.segment(self.buffer, self.buffer_start, self.emitted, end)
        self.emitted = end
        # keep only the inputs later outputs can still use
        keep_from = (end // r.new) * r.orig + int(r.first.min()) if end else 0
        drop = max(0, min(keep_from - self.buffer_start, self.buffer.shape[-1]))
        self.buffer, self.buffer_start = self.buffer[..., drop:], self.buffer_start + drop
        return out

    def push(self, block: torch.Tensor) -> torch.Tensor:
        block = torch.as_tensor(block).float()
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], dim=-1)
        self.received += block.shape[-1]
        r = self.resampler
        if r.identity:
            out, self.buffer = self.buffer, self.buffer[..., :0]
            return out
        # up to the last whole chunk whose every tap has arrived
        ready = ((self.received - 2 - math.ceil(r.reach)) * r.new) // r.orig
        return self._emit(max(self.emitted, ready // r.chunk * r.chunk))

    def flush(self) -> torch.Tensor:
        if self.buffer is None:
            return torch.zeros(0)
        if self.resampler.identity:
            return self.buffer[..., :0]
        return self._emit(self.resampler.output_length(self.received))
