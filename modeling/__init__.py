"""DSAML model code. Files here travel to the Hub as remote code: torch/transformers imports and relative
imports only. Importing this package registers DSAML with the transformers Auto classes."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .configuration_dsaml import LABEL_NAMES, DSAMLConfig
from .feature_extraction_dsaml import DSAMLFeatureExtractor
from .modeling_dsaml import (
    DSAMLEmotionOutput,
    DSAMLForDynamicEmotionRecognition,
    DSAMLModel,
    DSAMLModelOutput,
    DSAMLPreTrainedModel,
)

AutoConfig.register("dsaml", DSAMLConfig, exist_ok=True)
AutoModel.register(DSAMLConfig, DSAMLForDynamicEmotionRecognition, exist_ok=True)
AutoFeatureExtractor.register(DSAMLConfig, DSAMLFeatureExtractor, exist_ok=True)

__all__ = [
    "LABEL_NAMES",
    "DSAMLConfig",
    "DSAMLEmotionOutput",
    "DSAMLFeatureExtractor",
    "DSAMLForDynamicEmotionRecognition",
    "DSAMLModel",
    "DSAMLModelOutput",
    "DSAMLPreTrainedModel",
]
