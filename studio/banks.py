"""Concept banks at run time: where they are, loading them (cached), and checking a recipe against them.

The file format is probes/bank.py's ``ConceptBank``; this module is the one place that finds bank folders, loads them,
checks them against the loaded model and checks what a recipe asks of them (classes, components, trained layers).

Where a model's banks live: the ones people build here go to a user folder, never into the installed code
(``$MUSICRFM_HOME/banks/<model>``; by default ``~/.cache/musicrfm/banks/<model>``, and
``/data/musicrfm/banks/<model>`` on a Hugging Face Space with persistent storage); the ones committed with the studio
are in ``assets/banks/<model>``. Both are searched, the user folder first, so a bank built here wins, and the studio and
the CLI say which folder a bank came from. ``<model>`` is the last part of the model id.

Where a recipe's banks are (its ``bank`` field): a folder holding one bank folder per concept (``<bank>/notes``), or
one bank folder; a name that is not a folder is looked up under ``assets/banks/``; null means the model's own
folders, as above. ``hf://owner/repo`` or ``hf://owner/repo/sub/folder`` names a bank (or a folder of bank folders) in
a Hugging Face Hub repo: studio/hub.py fetches it into the Hugging Face cache, and it is loaded and checked from there
like any other folder.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from probes.bank import META_FILE, TENSORS_FILE, ConceptBank, train_command
from studio.errors import BankError
from studio.fields import fail
from studio.files import ASSETS, user_home
from studio.hub import fetch, hub_id_of, is_hub_id
from studio.model import ModelSignature
from studio.recipe import Control, Recipe, chosen_layers

log = logging.getLogger(__name__)

BANKS_DIR = ASSETS / "banks"


def _model_folder_name(model_id: str) -> str:
    return model_id.rstrip("/").split("/")[-1]


def user_banks_root(model_id: str) -> Path:
    """Where the banks built here for a model are saved."""
    return user_home() / "banks" / _model_folder_name(model_id)


def model_banks_roots(model_id: str) -> list[Path]:
    """The folders searched for a model's banks, in order: the user's, then the committed ones."""
    return [user_banks_root(model_id), BANKS_DIR / _model_folder_name(model_id)]


def origin(folder: Path) -> str:
    """Where a bank folder is, for people: committed with the studio, built here, from the Hub, or a folder named by
    hand."""
    folder = Path(folder).resolve()
    hub_id = hub_id_of(folder)
    if hub_id is not None:
        return f"from the Hub ({hub_id})"
    if folder.is_relative_to(BANKS_DIR.resolve()):
        return f"committed with the studio ({folder})"
    if folder.is_relative_to(user_home().resolve()):
        return f"built here ({folder})"
    return str(folder)


def list_concepts(root: Path) -> list[str]:
    """Concepts with a bank under `root` (its folders holding a bank.json)."""
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file()) if root.is_dir() else []


def find_all(roots: list[Path]) -> dict[str, Path]:
    """Concept -> its bank folder: the first of `roots` that has one."""
    found: dict[str, Path] = {}
    for root in roots:
        for concept in list_concepts(root):
            found.setdefault(concept, root / concept)
    return dict(sorted(found.items()))


def bank_folder(bank: str | None, model_id: str, concept: str) -> Path:
    """The folder of `concept`'s bank for a recipe's ``bank`` field and model (see the module docstring)."""
    if bank is None:
        roots = model_banks_roots(model_id)
        folder = find_all(roots).get(concept)
        if folder is None:
            fail(
                "bank",
                f"has no bank for concept '{concept}' for {model_id} (looked in {roots[0]} and {roots[1]}); make "
                f"one with `{train_command(model_id, concept, roots[0] / concept)}`",
            )
        return folder
    if is_hub_id(bank):
        return fetch(bank, concept)
    root = Path(bank).expanduser()
    if not root.is_dir():
        root = BANKS_DIR / bank
    if not root.is_dir():
        fail(
            "bank",
            f"'{bank}' is neither a folder nor a bank under {BANKS_DIR}; make one with "
            f"`{train_command(model_id, concept)}`",
        )
    return root if (root / META_FILE).is_file() else root / concept


def load_bank(folder: Path) -> ConceptBank:
    """The bank in `folder`, loaded once per version of its files (banks are read-only once loaded)."""
    folder = Path(folder).resolve()
    stamps = tuple(f.stat().st_mtime_ns if f.is_file() else None for f in (folder / META_FILE, folder / TENSORS_FILE))
    return _load_cached(folder, stamps)


@functools.lru_cache(maxsize=64)
def _load_cached(folder: Path, stamps: tuple) -> ConceptBank:
    return ConceptBank.load(folder)


def check_model(bank: ConceptBank, signature: ModelSignature, where: str = "the concept bank") -> None:
    """Refuse a bank trained for another model: the one model check (id, config hash, width and layer count)."""
    if bank.signature != signature:
        raise BankError(
            f"{where} '{bank.concept}' was trained for {bank.signature.describe()} but the loaded model is "
            f"{signature.describe()}; use a bank trained for this model or train one with: "
            f"{train_command(signature.model_id, bank.concept)}"
        )


def load_all(roots: list[Path], loaded) -> dict[str, ConceptBank]:
    """Every bank under `roots` (the first root that has a concept wins) made for `loaded`; damaged or foreign ones
    are skipped with a warning."""
    banks = {}
    for concept, folder in find_all(roots).items():
        try:
            bank = load_bank(folder)
            check_model(bank, loaded.signature, where=f"the bank at {folder}")
        except BankError as err:
            log.warning("skipping bank %s: %s", concept, err)
            continue
        banks[concept] = bank
    return banks


def load_banks(bank: str | None, model_id: str, concepts: list[str]) -> dict[str, ConceptBank]:
    """The bank of each concept, from a recipe's ``bank`` field (see the module docstring) for `model_id`."""
    banks = {}
    for concept in concepts:
        folder = bank_folder(bank, model_id, concept)
        if not folder.is_dir():
            fail(
                "bank",
                f"has no bank for concept '{concept}' (looked in {folder}); make one with "
                f"`{train_command(model_id, concept, folder)}`",
            )
        try:
            found = load_bank(folder)
        except BankError as err:
            raise BankError(f"bank {folder}: {err}") from None
        if found.concept != concept:
            fail("bank", f"folder {folder} holds the '{found.concept}' bank, not '{concept}'")
        log.info("bank %s: %s", concept, origin(folder))
        banks[concept] = found
    return banks


# ------------------------------------------------------------------------------------------ a recipe against banks


def check_for_banks(recipe: Recipe, banks: dict[str, ConceptBank], signature: ModelSignature | None = None) -> None:
    """Refuse concepts without a bank, classes the bank lacks, direction components it does not keep and layers it
    has no trained probes on; with `signature`, banks made for another model too."""
    for concept in recipe.concepts():
        if concept in banks and signature is not None:
            check_model(banks[concept], signature, where="bank:")
    for i, control in enumerate(recipe.controls):
        if not control.enabled:
            continue
        bank = _bank_of(banks, control.concept, f"controls[{i}].concept")
        if control.class_name not in bank.classes:
            fail(
                f"controls[{i}].class",
                f"'{control.class_name}' is not a class of the '{control.concept}' bank; "
                f"choose one of: {', '.join(bank.classes)}",
            )
        components = bank.num_components
        if control.component >= components:
            fail(
                f"controls[{i}].component",
                f"must be below {components} (the bank keeps {components} "
                f"{'direction' if components == 1 else 'directions'} per class), got {control.component}",
            )
        _check_trained_layers(control, f"controls[{i}].layers", bank)
        if control.target is not None and bank.readout.task == "regression":
            fail(
                f"controls[{i}].target",
                f"needs class probabilities; the '{control.concept}' bank's readout predicts a value (regression)",
            )
    if recipe.readout:
        bank = _bank_of(banks, recipe.readout.concept, "readout.concept")
        layer = recipe.readout.layer
        if layer != "best" and layer != bank.readout_layer:
            fail(
                "readout.layer",
                f"the '{recipe.readout.concept}' bank has its readout probe at layer "
                f'{bank.readout_layer} only; use "best" or {bank.readout_layer}, got {layer}',
            )


def _bank_of(banks: dict, concept: str, path: str) -> ConceptBank:
    if concept not in banks:
        fail(
            path, f"names concept '{concept}' but no bank for it is loaded (have: {', '.join(sorted(banks)) or 'none'})"
        )
    return banks[concept]


def _trained_text(bank: ConceptBank) -> str:
    only = "" if len(bank.layers) == bank.num_layers else " only"
    return f"the '{bank.concept}' bank is trained on {bank.describe_layers()}{only}"


def _check_trained_layers(control: Control, path: str, bank: ConceptBank) -> None:
    """A control may only weight layers its bank has probes on (a bank may be trained on a subset of layers)."""
    spec, trained = control.layers, set(bank.layers)
    if spec.mode == "manual":
        for j, weight in enumerate(spec.weights):
            if weight != 0 and j not in trained:
                fail(
                    f"{path}.weights[{j}]",
                    f"puts weight {weight:g} on layer {j}, but {_trained_text(bank)}; set it to 0",
                )
        return
    for j, layer in enumerate(spec.layers or ()):
        if layer not in trained:
            fail(f"{path}.layers[{j}]", f"names layer {layer}, but {_trained_text(bank)}; choose among those")
    usable = [layer for layer in chosen_layers(spec, bank.num_layers) if layer in trained]
    if not usable:
        fail(
            f"{path}.layers",
            f"defaults to every layer but the first, and {_trained_text(bank)}; list the layers to use",
        )
    if spec.mode == "topk" and spec.k > len(usable):
        fail(
            f"{path}.k",
            f"must be at most the number of trained layers it chooses from ({len(usable)}: "
            f"{_trained_text(bank)}), got {spec.k}",
        )
