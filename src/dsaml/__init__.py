"""dsaml: personalized dynamic music emotion recognition (DSAML) for the Hugging Face ecosystem."""

from .modeling import (
    DSAMLConfig,
    DSAMLFeatureExtractor,
    DSAMLForDynamicEmotionRecognition,
    DSAMLModel,
    DSAMLPreTrainedModel,
)

__version__ = "0.1.0"

__all__ = [
    "DSAMLConfig",
    "DSAMLFeatureExtractor",
    "DSAMLForDynamicEmotionRecognition",
    "DSAMLModel",
    "DSAMLPreTrainedModel",
    "__version__",
]
