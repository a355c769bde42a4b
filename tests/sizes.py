"""The small DSAML architecture of the test suite and the benchmarks' "small" model (hidden 64, 4 heads,
2 layers): runs in milliseconds on a CPU. One definition, imported by tests/conftest.py and benchmarks/common.py."""

SMALL = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_hidden_layers=2,
    intermediate_size=128,
    lstm_hidden_size=32,
    predictor_hidden_size=32,
    global_cnn_channels=32,
)
