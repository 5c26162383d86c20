"""The export stage: a checkpoint as a deployable file (ONNX) with its checks."""
