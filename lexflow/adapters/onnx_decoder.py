"""ONNX decoders logged with ``mlflow.onnx``: one float input [N, d], one output [N, C, H, W].

Runs on onnxruntime's CUDA provider when onnxruntime-gpu is installed and a GPU is visible,
on the CPU otherwise.
"""

from __future__ import annotations

import os

import numpy as np

from lexflow.adapters.base import ModelInfo, flavor_conf
from lexflow.errors import ConfigError, ModelContractError, require


class OnnxDecoderAdapter:
    flavor = "onnx"

    def __init__(self, path: str, *, device: str = "auto") -> None:
        ort = require("onnxruntime", extra="onnx", purpose="Decoding an ONNX model")
        available = ort.get_available_providers()
        if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise ConfigError(
                f"device={device!r} but onnxruntime has no CUDAExecutionProvider (available: "
                f"{available}). Install onnxruntime-gpu (pip install 'lexflow[onnx-gpu]') or use "
                "device=cpu."
            )
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise ModelContractError(f"onnxruntime could not load {path}: {exc}") from exc
        self.device = self.session.get_providers()[0]
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelContractError(
                f"An ONNX decoder must have exactly one input [N, d]; this one has "
                f"{[i.name for i in inputs]}."
            )
        shape = inputs[0].shape
        if len(shape) != 2 or not isinstance(shape[1], int):
            raise ModelContractError(
                f"The ONNX decoder's input must be [N, d] with a fixed d; got shape {shape}."
            )
        if "float" not in inputs[0].type:
            raise ModelContractError(f"The ONNX decoder's input must be float; got {inputs[0].type}.")
        self.latent_dim = int(shape[1])
        self._input = inputs[0].name
        self._output = outputs[0].name
        self._np_dtype = np.float16 if "float16" in inputs[0].type else np.float32

    @classmethod
    def from_local(cls, local_dir: str, info: ModelInfo, *, device: str) -> OnnxDecoderAdapter:
        conf = flavor_conf(local_dir, "onnx")
        path = os.path.join(local_dir, conf.get("data", "model.onnx"))
        return cls(path, device=device)

    def decode(self, z: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self._output], {self._input: z.astype(self._np_dtype)})
        return np.asarray(out, dtype=np.float32)
