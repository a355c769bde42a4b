"""Configuration of DSAML (Dual-Scale Attention-Based Meta-Learning, arXiv 2412.19200): what the network is.

Every architectural choice of the method is a field, with its help and its bounds as field metadata (`setting`):
validation reads the bounds before anything is allocated (a model folder from the Hub is untrusted input), and
the documentation's reference table is generated from them. Defaults are the official training defaults
(`utils/args.py` of the reference code), not the reference constructor defaults, which differ. How the model is
personalized (the inner loop and how far it moves) is not here: dsaml keeps it in `personalization_config.json`
beside the weights, as transformers keeps `generation_config.json` apart from `config.json`.
"""

# No `from __future__ import annotations` here: @strict reads the field types at runtime to validate values.
import math
from dataclasses import MISSING, field, fields
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .resampling_dsaml import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE

LABEL_NAMES = ("arousal", "valence")  # output channel order of the reference code: 0 = arousal, 1 = valence
# Fields that configs written before the personalization recipe moved out still hold: dropped on load, so a saved
# config holds only what the network needs (dsaml reads them from such a folder's config.json itself).
MOVED_OUT = ("adaptation_method", "adaptation_steps", "adaptation_lr", "adapted_parameters", "adaptation_ridge",
             "adaptation_level_share", "adaptation_holdout", "adaptation_share", "adaptation_max_delay")


def setting(default, help: str, *, minimum=None, maximum=None, exclusive_minimum=None, exclusive_maximum=None):
    """A config field with its help and bounds (`bound_problems` checks them; the docs' tables show them). A
    bound applies to a number, or to each number of a list."""
    bounds = {"minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum,
              "exclusive_maximum": exclusive_maximum}
    metadata = {"help": help, **{k: v for k, v in bounds.items() if v is not None}}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def bounds_text(metadata) -> str:
    """The bounds of a field as interval text, e.g. `[1, 8192]`, `(0, 1)`, `>= 0`; '' for none."""
    low = ("[", metadata["minimum"]) if "minimum" in metadata else ("(", metadata.get("exclusive_minimum"))
    high = ("]", metadata["maximum"]) if "maximum" in metadata else (")", metadata.get("exclusive_maximum"))
    def number(value) -> str:
        return str(value) if isinstance(value, int) else f"{value:g}"

    if low[1] is None and high[1] is None:
        return ""
    if high[1] is None:
        return f"{'>=' if low[0] == '[' else '>'} {number(low[1])}"
    if low[1] is None:
        return f"{'<=' if high[0] == ']' else '<'} {number(high[1])}"
    return f"{low[0]}{number(low[1])}, {number(high[1])}{high[0]}"


def bound_problems(obj) -> list[str]:
    """`<field> must be in <bounds>, got <value>` for every field of the dataclass `obj` outside its bounds (NaN
    and infinities are outside every bound)."""
    problems = []
    for f in fields(obj):
        text = bounds_text(f.metadata)
        value = getattr(obj, f.name)
        if not text or value is None or isinstance(value, (bool, str, dict)):
            continue
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if not _within(number, f.metadata):
                problems.append(f"{f.name} must be in {text}, got {value}")
                break
    return problems


def _within(number, metadata) -> bool:
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        return False
    return (number >= metadata.get("minimum", -math.inf) and number <= metadata.get("maximum", math.inf)
            and number > metadata.get("exclusive_minimum", -math.inf)
            and number < metadata.get("exclusive_maximum", math.inf))


def field_help(cls) -> dict[str, str]:
    """Each field's help with its default and bounds, for documentation."""
    out = {}
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        bounds = bounds_text(f.metadata)
        out[f.name] = f"{f.metadata['help']} Default {default!r}" + (f"; {bounds}." if bounds else ".")
    return out


@strict
class DSAMLConfig(PreTrainedConfig):
    r"""
    The DSAML network: a per-step log-mel front end, the dual-scale feature extractor (a local CNN per 0.5 s step
    and a long-context global encoder, fused), one transformer encoder run under a local and a global band mask,
    and a BiLSTM predictor of arousal and valence at 2 Hz. Each field's help, default and bounds:
    `DSAMLConfig.help()` (and the documentation's configuration reference).

    Example:

    ```python
    >>> from dsaml import DSAMLConfig, DSAMLForDynamicEmotionRecognition
    >>> config = DSAMLConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, window_steps=20)
    >>> model = DSAMLForDynamicEmotionRecognition(config)
    ```
    """

    model_type = "dsaml"

    # input front end
    sampling_rate: int = setting(44100, "Sample rate the front end works at (audio at other rates is resampled).",
                                 minimum=MIN_SAMPLING_RATE, maximum=MAX_SAMPLING_RATE)
    step_seconds: float | int = setting(0.5, "Seconds per step: one prediction per step (2 Hz).",
                                        exclusive_minimum=0, maximum=10)
    n_fft: int = setting(2646, "FFT size of each step's log-mel frames (60 ms at 44.1 kHz).", minimum=1, maximum=65536)
    win_length: int = setting(2646, "Window length of the log-mel frames (<= n_fft).", minimum=1, maximum=65536)
    hop_length: int = setting(441, "Hop between log-mel frames (10 ms at 44.1 kHz).", minimum=1, maximum=65536)
    num_mel_bins: int = setting(128, "Mel bands per frame.", minimum=1, maximum=512)
    log_mel_eps: float | int = setting(1e-6, "Added before the log of the mel energies.", exclusive_minimum=0,
                                       maximum=1)
    input_type: Literal["log_mel", "frame_features"] = setting(
        "log_mel", "`log_mel` (audio through the feature extractor) or `frame_features` (precomputed frame features "
        "at the step rate, e.g. DEAM's openSMILE, `frame_feature_size` values per step).")
    frame_feature_size: int = setting(260, "Values per step with input_type `frame_features`.", minimum=1,
                                      maximum=4096)
    window_steps: int = setting(60, "Training window in steps (60 = 30 s); longer songs are predicted by sliding "
                                    "windows.", minimum=1, maximum=3600)
    harmonic_features: bool = setting(False, "Add each step's harmonic view (chroma and major/minor triad evidence "
                                             "from the step's own STFT, 38 values, `harmonic_dsaml.py`) to the input. "
                                             "Not in the paper: the log-mel patches barely resolve a semitone.")
    readout_cues: bool = setting(False, "The output layer also reads each step's chord quality (the best major and "
                                        "best minor triad similarity) beside the predictor's hidden features, so an "
                                        "inner loop that adapts it can re-weight or flip the mode. Needs "
                                        "harmonic_features. Not in the paper.")
    inference_hop_steps: int | None = setting(None, "Hop between sliding windows at inference; None: half the window "
                                                    "(as accurate as a sixth of it on the synthetic validation "
                                                    "listeners, at a third of the cost).", minimum=1, maximum=3600)

    # dual-scale feature extractor
    local_cnn_channels: list[int] | tuple[int, ...] = setting((8, 16), "Channels of the local CNN's two conv blocks "
                                                                       "(official 8, 16).", minimum=1, maximum=256)
    global_encoder: Literal["temporal_cnn", "pretrained", "none"] = setting(
        "temporal_cnn", "`temporal_cnn` (a trainable dilated CNN over the per-step spectra, works offline), "
        "`pretrained` (a frozen transformers audio encoder, `global_encoder_config`) or `none` (local scale only).")
    global_cnn_channels: int = setting(256, "Channels of the temporal CNN.", minimum=1, maximum=4096)
    global_cnn_kernel_size: int = setting(5, "Kernel size of the temporal CNN (odd: centred context).", minimum=1,
                                          maximum=63)
    global_cnn_dilations: list[int] | tuple[int, ...] = setting((1, 2, 4, 8), "Dilations of the temporal CNN's "
                                                                             "layers.", minimum=1, maximum=1024)
    global_input_norm: Literal["layer", "fixed"] = setting(
        "layer", "How the temporal CNN normalizes its per-step input: `layer` (a LayerNorm per step, removing the "
        "step's loudness) or `fixed` (each feature standardized by statistics of training audio, set once before "
        "the first step). Not in the paper.")
    global_encoder_config: dict | None = setting(None, "`config.to_dict()` of the frozen pretrained global encoder "
                                                       "(set by `from_global_encoder_pretrained`).")
    global_encoder_sampling_rate: int = setting(16000, "Sample rate of the frozen pretrained encoder.",
                                                minimum=MIN_SAMPLING_RATE, maximum=MAX_SAMPLING_RATE)
    global_context_seconds: float | int = setting(30.0, "Seconds of audio the frozen encoder embeds around a step.",
                                                  exclusive_minimum=0, maximum=600)
    global_encoder_stride_steps: int = setting(1, "The frozen encoder embeds every this-many-th step.", minimum=1,
                                               maximum=3600)

    # dual-scale attention transformer (ONE encoder shared by the local and the global pass)
    hidden_size: int = setting(1024, "Width of the fused features and the transformer.", minimum=1, maximum=8192)
    num_hidden_layers: int = setting(3, "Transformer layers (post-LN, BERT layout).", minimum=1, maximum=48)
    num_attention_heads: int = setting(16, "Attention heads (hidden_size must be a multiple).", minimum=1,
                                       maximum=128)
    intermediate_size: int = setting(2048, "Feed-forward width.", minimum=1, maximum=32768)
    hidden_act: str = setting("gelu", "Feed-forward activation: gelu, relu, silu, gelu_new or tanh.")
    hidden_dropout_prob: float | int = setting(0.1, "Dropout after attention and feed-forward.", minimum=0,
                                               exclusive_maximum=1)
    attention_probs_dropout_prob: float | int = setting(0.1, "Dropout of the attention probabilities.", minimum=0,
                                                        exclusive_maximum=1)
    layer_norm_eps: float | int = setting(1e-12, "LayerNorm epsilon.", exclusive_minimum=0, maximum=1)
    initializer_range: float | int = setting(0.02, "Standard deviation of the initial weights.", minimum=0,
                                             maximum=1)
    position_embedding_type: Literal["relative_key", "none"] = setting(
        "relative_key", "`relative_key` (a learned bias per relative distance, official) or `none`.")
    max_relative_positions: int = setting(512, "Size of the relative-distance table (longer distances are "
                                               "clipped).", minimum=1, maximum=8192)
    local_context_steps: int = setting(5, "Half-width of the local attention band (steps).", minimum=0, maximum=3600)
    global_context_steps: int = setting(30, "Half-width of the global attention band (steps).", minimum=0,
                                        maximum=3600)
    use_local_attention: bool = setting(True, "The local pass (the paper's ablation switch; both off: one "
                                              "unmasked pass).")
    use_global_attention: bool = setting(True, "The global pass (the paper's ablation switch).")

    # predictor and loss
    lstm_hidden_size: int = setting(256, "BiLSTM units per direction.", minimum=1, maximum=8192)
    predictor_hidden_size: int = setting(256, "Width of the dense layer before the output layer.", minimum=1,
                                         maximum=8192)
    predictor_dropout: float | int = setting(0.1, "Dropout before the output layer.", minimum=0, exclusive_maximum=1)
    loss_type: Literal["ccc_pcc_rmse", "mse"] = setting(
        "ccc_pcc_rmse", "`ccc_pcc_rmse` (official: 1 - mean(CCC, PCC, 1 - RMSE) over arousal and valence) or `mse`.")
    diagonal_loss_weight: float | int = setting(1.0, "Weight of the diagonal attention loss.", minimum=0,
                                                maximum=1000)
    local_diagonal_target: float | int = setting(0.9, "Target of the local attention map's diagonal.", minimum=0,
                                                 maximum=1)
    global_diagonal_target: float | int = setting(0.1, "Target of the global attention map's diagonal.", minimum=0,
                                                  maximum=1)
    learn_adaptation_ridge: bool = setting(False, "Four meta-parameters (`predictor.ridge`): the ridge inner loop's "
                                                  "pull toward the output layer and its level share, one each per "
                                                  "dimension, learned through the solve (R2-D2, Bertinetto et al., "
                                                  "ICLR 2019).")

    def __post_init__(self, **kwargs):
        for name in MOVED_OUT:
            kwargs.pop(name, None)
        # JSON round trips turn tuples into lists; keep one canonical type so saved/loaded configs compare equal.
        self.local_cnn_channels = [int(c) for c in self.local_cnn_channels]
        self.global_cnn_dilations = [int(d) for d in self.global_cnn_dilations]
        super().__post_init__(**kwargs)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Each field's help, default and bounds."""
        return field_help(cls)

    @property
    def num_labels_out(self) -> int:
        return len(LABEL_NAMES)

    @property
    def hop_steps(self) -> int:
        """The sliding-window hop prediction uses: `inference_hop_steps`, or half the window when None."""
        return self.inference_hop_steps or max(1, self.window_steps // 2)

    @property
    def samples_per_step(self) -> int:
        return int(round(self.sampling_rate * self.step_seconds))

    @property
    def frames_per_step(self) -> int:
        # torchaudio's MelSpectrogram with center=True yields 1 + n // hop frames.
        return 1 + self.samples_per_step // self.hop_length

    @property
    def local_feature_size(self) -> int:
        """Flattened size of the local CNN output (476 for the official 51 x 128 patches)."""
        def pooled(size: int) -> int:  # MaxPool2d(2, padding=1)
            return size // 2 + 1

        # conv (3, 1) with padding (2, 1) grows the patch by (2, 2); the 3x3 conv keeps its size.
        height, width = self.frames_per_step + 2, self.num_mel_bins + 2
        return pooled(pooled(height)) * pooled(pooled(width))

    def validate_dsaml(self):
        """Part of `@strict` validation: values that are well-typed but out of bounds or meaningless together."""
        problems = bound_problems(self) + self._combination_problems()
        if problems:
            raise ValueError(f"DSAMLConfig: {problems[0]}")

    def _combination_problems(self) -> list[str]:
        rules = [
            (self.win_length <= self.n_fft, f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})"),
            (self.hidden_size % self.num_attention_heads == 0, f"hidden_size ({self.hidden_size}) must be a multiple "
                                                               f"of num_attention_heads ({self.num_attention_heads})"),
            (len(self.local_cnn_channels) == 2, f"local_cnn_channels must be two channel counts, got "
                                                f"{self.local_cnn_channels}"),
            (1 <= len(self.global_cnn_dilations) <= 16, f"global_cnn_dilations must hold 1 to 16 dilations, got "
                                                        f"{self.global_cnn_dilations}"),
            (self.global_cnn_kernel_size % 2 == 1, "global_cnn_kernel_size must be odd (centred context)"),
            (not self.readout_cues or self.harmonic_features, "readout_cues reads the harmonic view: set "
                                                              "harmonic_features too"),
            (self.hidden_act in {"gelu", "relu", "silu", "gelu_new", "tanh"}, "hidden_act must be one of gelu, relu, "
                                                                              f"silu, gelu_new, tanh; got "
                                                                              f"{self.hidden_act!r}"),
        ]
        if self.global_encoder == "pretrained":
            rules += [
                (isinstance(self.global_encoder_config, dict) and "model_type" in self.global_encoder_config,
                 "global_encoder='pretrained' needs global_encoder_config (a transformers config dict with "
                 "model_type); build the model with DSAMLForDynamicEmotionRecognition.from_global_encoder_pretrained"),
                (self.input_type == "log_mel", "a pretrained global encoder needs audio input (log_mel)"),
            ]
        return [message for ok, message in rules if not ok]


__all__ = ["DSAMLConfig", "LABEL_NAMES", "MOVED_OUT", "bound_problems", "bounds_text", "field_help", "setting"]
