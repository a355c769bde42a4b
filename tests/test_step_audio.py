"""`global_input_values` mean one thing everywhere: the song at the model rate, cut by `step_samples`."""

from __future__ import annotations

import soundfile as sf
import torch
from conftest import small_config, tone
from transformers import Wav2Vec2Config

from dsaml import DSAMLFeatureExtractor
from dsaml.data.song_store import SongStore
from dsaml.modeling.step_audio_dsaml import context_windows, step_samples


def pretrained_config():
    encoder = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                             num_conv_pos_embedding_groups=2)
    return small_config(global_encoder="pretrained", global_encoder_config=encoder.to_dict(),
                        global_encoder_sampling_rate=16000)


def test_training_store_gives_the_waveform_prediction_gives(tmp_path):
    # a 16 kHz file: training (SongStore) and prediction (the feature extractor) must hand the model the
    # same 44.1 kHz samples; the model resamples them for its encoder itself
    audio = tone(4.2, sr=16000, freq=330)
    sf.write(tmp_path / "song.wav", audio, 16000, subtype="FLOAT")
    config = pretrained_config()
    row = {"song_id": "s", "annotator": "a", "audio": "song.wav", "arousal": [0.1] * 6, "valence": [0.2] * 6,
           "start_seconds": 1.0, "frame_rate": 2.0}
    song = SongStore([row], tmp_path, config).song(0)
    assert song.start_step == 2 and song.num_steps == 6
    batch = DSAMLFeatureExtractor.from_model_config(config)(audio, sampling_rate=16000)
    expected = step_samples(batch["global_input_values"][0], 2, 8, 22050)
    assert song.waveform.shape == (6 * 22050,)
    torch.testing.assert_close(song.waveform, expected, atol=0, rtol=0)


def test_context_windows_are_centred_on_their_steps():
    wave = torch.arange(1, 41, dtype=torch.float32)[None]  # 10 steps of 4 samples
    windows = context_windows(wave, num_steps=10, stride=3, step_samples_count=4, context=6)
    assert windows.shape == (1, 4, 6)  # steps 0, 3, 6, 9
    # step 3 covers samples 12..15 (values 13..16); its centre is sample 14, the window samples 11..16
    assert windows[0, 1].tolist() == [12, 13, 14, 15, 16, 17]
    assert windows[0, 0].tolist() == [0, 1, 2, 3, 4, 5] and windows[0, 3].tolist() == [36, 37, 38, 39, 40, 0]
