"""Explainers: words for an anomaly map (template, weight-free; or an expert-guided VLM).

- ``template``: deterministic explanation from map regions (always available, fast).
- ``prompts``: expert-guided chat prompts (overlay, crops, region facts, product context)
  from the editable templates in ``resources/prompts``; training chat pairs.
- ``parse``: lenient reader of model answers into an Explanation (never raises).
- ``vlm``: transformers image-text-to-text explainer with LoRA adapter, streaming,
  retry and template fallback; ``cache``: result cache keyed by content and version.
- ``result``: the ExplainResult every explainer returns and the Explainer protocol.
- ``encode``: chat pair -> model inputs with answer-only labels (VLM LoRA rounds).
- ``tiny``: a tiny random Qwen2-VL / Qwen2.5-VL folder for tests and benchmarks.

``template``, ``prompts``, ``parse`` and ``result`` need only numpy/OpenCV/Pillow; torch
and transformers are imported when a model is first loaded.
"""
