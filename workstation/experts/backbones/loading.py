"""Loading the ViT backbones' torch modules: from local files only, or at random for timing.

open_clip and transformers are imported inside each loader, so importing this module
stays torch-free. A file that fails to load becomes one :class:`UserError` naming the
model and its folder; ``random_*`` build the catalogue's real architecture without weights
for benchmarks.
"""

from __future__ import annotations

from typing import Any

from workstation.core.errors import UserError
from workstation.pretrained.catalog import CatalogEntry
from workstation.pretrained.weights import ResolvedModel

# Official DINOv2 sizes, so benchmarks can time the real architectures without weights.
_DINOV2_SIZES: dict[str, dict[str, int]] = {
    "dinov2-small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "dinov2-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
}


def _load_error(resolved: ResolvedModel, exc: Exception) -> UserError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"could not load model {resolved.name!r} from {resolved.path}: {reason}. "
        "The files may be damaged; reinstall the bundle or download the model again"
    )


def load_open_clip(resolved: ResolvedModel) -> tuple[Any, str]:
    """(CLIP model, tokenizer source for ``open_clip.get_tokenizer``) from local files only."""
    import open_clip

    try:
        if resolved.path.is_dir():
            source = f"local-dir:{resolved.path}"
            model = open_clip.create_model(source)
        else:
            assert resolved.entry is not None, "a cached checkpoint always has its catalogue entry"
            source = resolved.entry.architecture
            model = open_clip.create_model(
                source, pretrained=str(resolved.path), force_quick_gelu=resolved.entry.quick_gelu
            )
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise _load_error(resolved, exc) from None
    return model.eval(), source


def random_clip(entry: CatalogEntry) -> Any:
    import open_clip

    return open_clip.create_model(
        entry.architecture, pretrained=None, force_quick_gelu=entry.quick_gelu
    ).eval()


def load_dinov2(resolved: ResolvedModel) -> Any:
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(resolved.path, local_files_only=True)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise _load_error(resolved, exc) from None
    return model.eval()


def random_dinov2(entry: CatalogEntry) -> Any:
    from transformers import Dinov2Config, Dinov2Model

    sizes = _DINOV2_SIZES[entry.name]
    config = Dinov2Config(
        **sizes,
        intermediate_size=4 * sizes["hidden_size"],
        patch_size=entry.patch_size,
        image_size=518,
    )
    return Dinov2Model(config).eval()
