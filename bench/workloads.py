"""What the benchmarks run: random-weight models of the published shapes, random concept banks, and the steered
recipe that hooks every decoder layer with the readout on.

Random weights of the published shapes have the real compute profile: decoder small d=1024 x 24 layers x 16 heads
(ffn 4096), large d=2048 x 48 x 32 (ffn 8192); t5-base text encoder; EnCodec 32 kHz with 4 codebooks of 2048.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from probes.bank import ConceptBank
from probes.rfm import RFMProbe
from studio.model import LoadedModel, ModelSignature, as_loaded, load_model, resolve_device, tiny_tokenizer
from studio.recipe import Control, LayerSpec, ReadoutSpec, Recipe

NOTE_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
DECODER_SHAPES = {
    "small": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
    "large": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, ffn_dim=8192),
}
SHAPES = ("tiny", *DECODER_SHAPES)
# The text encoder (t5-base) and codec (encodec_32khz) that musicgen-small and -large share; EnCodec's defaults fill in.
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
CODEC_32KHZ = dict(num_filters=64, codebook_size=2048, codebook_dim=128, target_bandwidths=[2.2])


def shaped_model(shape: str, device: str | None = None, precision: str | None = None) -> LoadedModel:
    """The built-in tiny model, or random weights of musicgen-`shape`'s architecture built directly on the device."""
    if shape == "tiny":
        return load_model("tiny", device=device, precision=precision)
    from transformers import MusicgenForConditionalGeneration

    from studio.model import musicgen_config, resolve_precision, sampling_defaults

    torch_device = resolve_device(device)
    decoder = dict(vocab_size=2048, max_position_embeddings=2048, **DECODER_SHAPES[shape])
    config = musicgen_config(text=T5_BASE, codec=CODEC_32KHZ, decoder=decoder)
    torch.manual_seed(0)
    with torch.device(torch_device):  # built on the device: a large model's random init is slow on the CPU
        model = MusicgenForConditionalGeneration(config)
    model.generation_config = sampling_defaults(2048)
    return as_loaded(
        model,
        tiny_tokenizer(),
        f"musicgen-{shape}-shape",
        torch_device,
        resolve_precision(precision, torch_device),
    )


def random_bank(
    signature: ModelSignature,
    concept: str = "notes",
    classes: list[str] | None = None,
    components: int = 4,
    probe_points: int = 256,
    readout_layer: int | None = None,
    seed: int = 0,
) -> ConceptBank:
    """A ConceptBank of the right shapes for `signature` with random unit directions, random validation AUCs and a
    multiclass RFM readout probe with random centers (identity metric): real code paths, meaningless concepts."""
    classes = list(classes or NOTE_CLASSES)
    gen = torch.Generator().manual_seed(seed)
    L, C, d = signature.num_layers, len(classes), signature.hidden_size
    directions = torch.randn(L, C, components, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    alphas = torch.rand(probe_points, C, generator=gen) / probe_points
    readout = random_probe(torch.randn(probe_points, d, generator=gen), alphas, task="multiclass")
    return ConceptBank(
        concept=concept,
        classes=classes,
        directions=directions,
        val_score=0.5 + 0.5 * torch.rand(L, C, generator=gen),
        readout_layer=readout_layer if readout_layer is not None else L // 2,
        readout=readout,
        signature=signature,
        pooling="mean",
        hparams={},
        dataset={"synthetic": True, "seed": seed},
    )


def random_probe(centers: torch.Tensor, alphas: torch.Tensor, **fields) -> RFMProbe:
    """An RFM probe over `centers` with the identity metric and `alphas`: the arithmetic of a fitted one, without a
    fit. `fields` override the defaults (task, scores, target scaling)."""
    d = centers.shape[1]
    defaults = dict(bandwidth=10.0, exponent=1.0, reg=1e-3, center_grads=False, task="multiclass", val_score=0.5)
    return RFMProbe(
        centers=centers, alphas=alphas, M=torch.eye(d), agop=torch.eye(d), best_iter=0, **(defaults | fields)
    )


def steered_recipe(loaded: LoadedModel, base: Recipe, bank: ConceptBank) -> Recipe:
    """Every layer carries a control (manual weight 1 everywhere, gate p = 1) and the readout is on."""
    every_layer = LayerSpec(mode="manual", weights=tuple([1.0] * loaded.num_layers))
    controls = (
        Control(concept=bank.concept, class_name=bank.classes[0], strength=0.3, layers=every_layer, gate_p=1.0),
        Control(
            concept=bank.concept, class_name=bank.classes[1], strength=-0.2, component=1, layers=every_layer, gate_p=1.0
        ),
    )
    return replace(base, controls=controls, readout=ReadoutSpec(concept=bank.concept))
