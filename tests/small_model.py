"""The small TCN that the inference, streaming, ONNX and separation tests build their models from."""

SMALL = dict(n_filters=32, kernel_size=16, stride=8, bn_chan=16, hid_chan=32, skip_chan=16, n_blocks=4,
             n_repeats=2)
