"""tweetmood: batch scoring of emotions in tweets with a quantized ONNX model."""

__version__ = "0.1.0"
