"""Configuration of DSAML (Dual-Scale Attention-Based Meta-Learning, arXiv 2412.19200).

Every architectural choice of the method is a field. Defaults are the official training defaults
(`utils/args.py` of the reference code), not the reference constructor defaults, which differ.
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

LABEL_NAMES = ("arousal", "valence")  # output channel order of the reference code: 0 = arousal, 1 = valence


@strict
class DSAMLConfig(PreTrainedConfig):
    r"""
    Input (2 Hz steps of `step_seconds`, log-mel patches per step as in the reference code):
        sampling_rate, step_seconds, n_fft, win_length, hop_length, num_mel_bins, log_mel_eps:
            the per-step log-mel front end (44.1 kHz, 60 ms windows, 10 ms hop, 128 mels -> 51 x 128 per step).
        input_type: `"log_mel"` (audio through the feature extractor) or `"frame_features"` (precomputed frame
            features at the step rate, e.g. DEAM openSMILE, `frame_feature_size` values per step).
        window_steps: training window (60 steps = 30 s); longer songs are predicted by sliding windows.
        harmonic_features: add each step's harmonic view (chroma and major/minor triad evidence from the step's
            own STFT, 38 values, see `harmonic_dsaml.py`) to the model's input. Not in the paper: the log-mel
            patches barely resolve a semitone, i.e. whether a chord is major or minor.
        readout_cues: the output layer also reads each step's chord quality (the harmonic view's best major and
            best minor triad similarity, `harmonic_dsaml.readout_cues`) directly, beside the predictor's hidden
            features, so an inner loop that adapts the output layer can re-weight or flip the sign of what a
            listener hears in the mode. Needs `harmonic_features`. Not in the paper.
        inference_hop_steps: hop between sliding windows; overlapping predictions are averaged with a
            tapered weight, the same hop for arousal and valence. None (default): half the window
            (`hop_steps`), chosen on the synthetic validation listeners: as accurate as a hop of a sixth of the
            window at a third of its cost (README, streaming inference).

    Dual-scale feature extractor:
        local_cnn_channels: channels of the two conv blocks of the local "adapter" CNN (official 8, 16).
        global_encoder: `"temporal_cnn"` (default: trainable dilated CNN over the per-step spectra with a
            `global_context_steps`-wide receptive field, works offline), `"pretrained"` (a frozen transformers
            audio encoder taking raw waveforms, see `global_encoder_config`) or `"none"` (local scale only).
        global_cnn_channels, global_cnn_kernel_size, global_cnn_dilations: the temporal CNN.
        global_input_norm: how the temporal CNN normalizes its per-step input (each mel band's mean and std over
            the step, [+ the harmonic view]): `"layer"` (default) a LayerNorm over each step's values, which
            removes the step's level (its loudness) and leaves each feature's offset, so differences between songs
            are a small part of what the CNN reads; `"fixed"` each feature standardized by its mean and std over
            training audio, set once before the first step (`DualScaleFeatureFusion.calibrate`) and then fixed,
            as the local CNN's normalizations are. Not in the paper (it has no temporal CNN).
        global_encoder_config: `config.to_dict()` of the frozen pretrained encoder (set by
            `DSAMLForDynamicEmotionRecognition.from_global_encoder_pretrained`).
        global_encoder_sampling_rate, global_context_seconds, global_encoder_stride_steps: the frozen encoder
            embeds a `global_context_seconds` window centred on every `global_encoder_stride_steps`-th step.

    Dual-scale attention transformer (ONE encoder shared by the local and the global pass):
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act, hidden_dropout_prob,
        attention_probs_dropout_prob, layer_norm_eps, initializer_range: as in BERT (post-LN).
        position_embedding_type: `"relative_key"` (learned relative-distance bias, official) or `"none"`.
        max_relative_positions: size of the relative-distance table (distances beyond are clipped).
        local_context_steps / global_context_steps: band half-widths of the local / global attention masks.
        use_local_attention / use_global_attention: ablation switches (both off = one unmasked pass).

    Predictor and loss:
        lstm_hidden_size, predictor_hidden_size, predictor_dropout: BiLSTM -> Linear -> Dropout -> Linear(2).
        loss_type: `"ccc_pcc_rmse"` (official: 1 - mean(CCC, PCC, 1 - RMSE) over arousal and valence) or `"mse"`.
        diagonal_loss_weight, local_diagonal_target, global_diagonal_target: the diagonal attention loss.

    Personalization (the meta-learned inner loop; training and `dsaml personalize` read the same values):
        adaptation_method: `"sgd"` (official: `adaptation_steps` SGD steps on `adapted_parameters`) or `"ridge"`
            (the output layer refitted in closed form on the support song: ridge regression of the listener's
            labels on the predictor's last hidden features, shrunk toward the meta-learned output layer).
        adaptation_steps, adaptation_lr: inner SGD steps and learning rate (official 16, 5e-3).
        adapted_parameters: parameter-name prefixes adapted in the inner loop; empty = all trainable parameters.
        adaptation_ridge: the ridge's pull toward the meta-learned output layer, relative to the support
            features' mean variance (0: ordinary least squares).
        adaptation_level_share: the share of the support song's mean residual by which the ridge moves the
            level of the curves (1: the level is refitted freely; 0: kept from the base model).
        learn_adaptation_ridge: meta-learn the ridge's pull and level share, one each per dimension (four
            parameters of `predictor.ridge`, starting from `adaptation_ridge` / `adaptation_level_share`), as
            R2-D2 (Bertinetto et al., ICLR 2019) meta-learns its ridge: the training listeners decide how much
            one song says about the next.
        adaptation_holdout: personalization only (never meta-training): the share of the support song's end
            held out to choose how far to move toward the adapted weights (`dsaml.shrinkage`, the do-no-harm
            rule); 0 (official): always all the way.
        adaptation_share: personalization only: the share of the inner loop's change kept for arousal and
            valence, `base + share_d * (adapted_d - base_d)` (after the do-no-harm rule, if on), chosen on the
            validation listeners after training (`calibrate_adaptation`, `dsaml.calibration`): how much one
            song says about a listener's other songs where no listener was trained on. [1, 1] (official):
            the inner loop as meta-trained.
        adaptation_max_delay: with the ridge inner loop, the listener's reaction lag is fitted on the support
            song too: the delay of the output curve by 0..max steps whose refit fits the song best
            (`predictor.delay`; one lag per listener; a dimension whose share is 0 keeps no delay). Chosen on
            the validation listeners with the share (`calibrate_adaptation`); 0 (official): no delay.
    """

    model_type = "dsaml"

    # input front end
    sampling_rate: int = 44100
    step_seconds: float | int = 0.5
    n_fft: int = 2646
    win_length: int = 2646
    hop_length: int = 441
    num_mel_bins: int = 128
    log_mel_eps: float | int = 1e-6
    input_type: Literal["log_mel", "frame_features"] = "log_mel"
    frame_feature_size: int = 260
    window_steps: int = 60
    harmonic_features: bool = False
    readout_cues: bool = False
    inference_hop_steps: int | None = None

    # dual-scale feature extractor
    local_cnn_channels: list[int] | tuple[int, ...] = (8, 16)
    global_encoder: Literal["temporal_cnn", "pretrained", "none"] = "temporal_cnn"
    global_cnn_channels: int = 256
    global_cnn_kernel_size: int = 5
    global_cnn_dilations: list[int] | tuple[int, ...] = (1, 2, 4, 8)
    global_input_norm: Literal["layer", "fixed"] = "layer"
    global_encoder_config: dict | None = None
    global_encoder_sampling_rate: int = 16000
    global_context_seconds: float | int = 30.0
    global_encoder_stride_steps: int = 1

    # dual-scale attention transformer
    hidden_size: int = 1024
    num_hidden_layers: int = 3
    num_attention_heads: int = 16
    intermediate_size: int = 2048
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    layer_norm_eps: float | int = 1e-12
    initializer_range: float | int = 0.02
    position_embedding_type: Literal["relative_key", "none"] = "relative_key"
    max_relative_positions: int = 512
    local_context_steps: int = 5
    global_context_steps: int = 30
    use_local_attention: bool = True
    use_global_attention: bool = True

    # predictor and loss
    lstm_hidden_size: int = 256
    predictor_hidden_size: int = 256
    predictor_dropout: float | int = 0.1
    loss_type: Literal["ccc_pcc_rmse", "mse"] = "ccc_pcc_rmse"
    diagonal_loss_weight: float | int = 1.0
    local_diagonal_target: float | int = 0.9
    global_diagonal_target: float | int = 0.1

    # personalization (meta-learned inner loop)
    adaptation_method: Literal["sgd", "ridge"] = "sgd"
    adaptation_steps: int = 16
    adaptation_lr: float | int = 5e-3
    adapted_parameters: list[str] | tuple[str, ...] = ()
    adaptation_ridge: float | int = 1.0
    adaptation_level_share: float | int = 1.0
    learn_adaptation_ridge: bool = False
    adaptation_holdout: float | int = 0.0
    adaptation_share: list[float] | tuple[float, ...] = (1.0, 1.0)
    adaptation_max_delay: int = 0

    def __post_init__(self, **kwargs):
        # JSON round trips turn tuples into lists; keep one canonical type so saved/loaded configs compare equal.
        self.local_cnn_channels = [int(c) for c in self.local_cnn_channels]
        self.global_cnn_dilations = [int(d) for d in self.global_cnn_dilations]
        self.adapted_parameters = [str(p) for p in self.adapted_parameters]
        self.adaptation_share = [float(a) for a in self.adaptation_share]
        super().__post_init__(**kwargs)

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

    def _require(self, condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(f"DSAMLConfig: {message}")

    def validate_dsaml(self):
        """Part of `@strict` validation: values that are well-typed but meaningless."""
        positive = (
            "sampling_rate", "n_fft", "win_length", "hop_length", "num_mel_bins", "frame_feature_size",
            "window_steps", "global_cnn_channels", "global_cnn_kernel_size",
            "global_encoder_sampling_rate", "global_encoder_stride_steps", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "max_relative_positions", "lstm_hidden_size",
            "predictor_hidden_size", "adaptation_steps",
        )
        for name in positive:
            self._require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        self._require(self.inference_hop_steps is None or self.inference_hop_steps > 0,
                      f"inference_hop_steps must be > 0 (or None: half the window), got {self.inference_hop_steps}")
        self._require(self.step_seconds > 0, f"step_seconds must be > 0, got {self.step_seconds}")
        self._require(self.global_context_seconds > 0, "global_context_seconds must be > 0")
        self._require(self.win_length <= self.n_fft, f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        self._require(
            self.hidden_size % self.num_attention_heads == 0,
            f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})",
        )
        self._require(
            self.local_context_steps >= 0 and self.global_context_steps >= 0, "attention context widths must be >= 0"
        )
        self._require(
            len(self.local_cnn_channels) == 2 and all(c > 0 for c in self.local_cnn_channels),
            f"local_cnn_channels must be two positive channel counts, got {self.local_cnn_channels}",
        )
        self._require(
            len(self.global_cnn_dilations) > 0 and all(d > 0 for d in self.global_cnn_dilations),
            f"global_cnn_dilations must be positive, got {self.global_cnn_dilations}",
        )
        self._require(self.global_cnn_kernel_size % 2 == 1, "global_cnn_kernel_size must be odd (centred context)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "predictor_dropout"):
            self._require(0.0 <= getattr(self, name) < 1.0, f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("local_diagonal_target", "global_diagonal_target"):
            self._require(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._require(self.diagonal_loss_weight >= 0, "diagonal_loss_weight must be >= 0")
        self._require(self.adaptation_lr > 0, f"adaptation_lr must be > 0, got {self.adaptation_lr}")
        self._require(self.adaptation_ridge >= 0, f"adaptation_ridge must be >= 0, got {self.adaptation_ridge}")
        self._require(0 <= self.adaptation_level_share <= 1,
                      f"adaptation_level_share must be in [0, 1], got {self.adaptation_level_share}")
        self._require(not self.learn_adaptation_ridge or self.adaptation_method == "ridge",
                      "learn_adaptation_ridge meta-learns the ridge inner loop: set adaptation_method: ridge")
        self._require(not self.readout_cues or self.harmonic_features,
                      "readout_cues reads the harmonic view: set harmonic_features too")
        self._require(0 <= self.adaptation_holdout < 1,
                      f"adaptation_holdout must be in [0, 1), got {self.adaptation_holdout}")
        self._require(len(self.adaptation_share) == 2 and all(a >= 0 for a in self.adaptation_share),
                      f"adaptation_share must be two shares >= 0 (arousal, valence), got {self.adaptation_share}")
        self._require(self.adaptation_max_delay >= 0 and self.adaptation_max_delay < self.window_steps,
                      f"adaptation_max_delay must be in [0, window_steps), got {self.adaptation_max_delay}")
        self._require(not self.adaptation_max_delay or self.adaptation_method == "ridge",
                      "adaptation_max_delay chooses the delay with the ridge refit: set adaptation_method: ridge")
        self._require(not self.adaptation_max_delay or not self.adaptation_holdout,
                      "adaptation_max_delay and adaptation_holdout cannot be combined (the do-no-harm rule scores "
                      "undelayed curves): set one of them to 0")
        read_out = {"predictor.dense", "predictor.out"}
        read_out |= {f"{m}.{p}" for m in read_out for p in ("weight", "bias")}
        self._require(
            len(set(self.adaptation_share)) == 1
            or bool(self.adapted_parameters and set(self.adapted_parameters) <= read_out),
            f"adaptation_share {self.adaptation_share} differs per dimension, which needs an inner loop that adapts "
            f"only the predictor's linear read-out (predictor.dense, predictor.out); adapted_parameters is "
            f"{self.adapted_parameters or 'every parameter'}")
        self._require(
            self.hidden_act in {"gelu", "relu", "silu", "gelu_new", "tanh"},
            f"hidden_act must be one of gelu, relu, silu, gelu_new, tanh; got {self.hidden_act!r}",
        )
        if self.global_encoder == "pretrained":
            self._require(
                isinstance(self.global_encoder_config, dict) and "model_type" in self.global_encoder_config,
                "global_encoder='pretrained' needs global_encoder_config (a transformers config dict with model_type);"
                " build the model with DSAMLForDynamicEmotionRecognition.from_global_encoder_pretrained(...)",
            )
            self._require(self.input_type == "log_mel", "a pretrained global encoder needs audio input (log_mel)")


__all__ = ["DSAMLConfig", "LABEL_NAMES"]
