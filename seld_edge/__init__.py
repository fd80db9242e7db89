"""seld-edge: sound event localization and detection models from papers to edge GPUs."""

__version__ = "0.1.0"
