"""Explainers: words for an anomaly map (template, weight-free; or a guided VLM).

``template`` and ``prompts`` need only numpy/OpenCV; ``vlm`` imports torch and
transformers when a model is first loaded.
"""
