"""ConceptBank: the steering directions of one concept for one model, trained by RFM probes, saved without pickle.

A bank holds, for every decoder layer l and class c, the top-K eigenvectors of the AGOP of the one-vs-rest RFM probe of
class c at layer l (``directions[l, c, k]``, unit vectors, largest eigenvalue first), each signed so that moving along
+v raises the probe's class score (mean directional derivative over its training points); the validation score of each
of those probes (``val_score[l, c]``); and a multiclass readout probe at one layer.

A bank may be trained on a subset of the decoder layers (``layers``, ascending; default all), which keeps quick runs on
big models cheap. The tensors keep their full per-layer shape so that layer indices mean the same in every bank; an
untrained layer has all-zero directions and eigenvalues and a NaN validation score ("not measured", never a score a
layer ranking could pick), and the readout layer is always a trained one. Banks saved before ``layers`` existed hold
every layer.

Other direction methods (``method``: mean-diff, pca, linear, logistic; see probes/directions.py) fill the same
tensors from the same activations, signed by the same rule; the methods with one direction per layer and class keep
K = 1, and ``eigenvalues`` is absent except for pca. The readout probe is an RFM probe whatever the method. Banks saved
before ``method`` existed are RFM banks.

Regression concepts (tempos) have the single class ``"value"``: one regression probe per layer, directions signed to
raise the predicted value, and ``val_score`` holds the validation R^2 instead of an AUC (``val_metric == "r2"``); R^2 is
1 for a perfect fit, 0 for predicting the mean, and negative for worse. Their readout predicts the value
(``readout.predict``) and has no class probabilities.

A bank also keeps each layer's typical residual norm (``residual_norm[l]``: over the training clips, the median of the
mean norm of the layer's output over the clip's steps), so that a strength can be read as a fraction of the stream it
pushes; one strength is a different push on models whose streams differ in scale. Older banks lack it (None).

On disk a bank is a folder: ``bank.safetensors`` (directions, val_score, eigenvalues, residual_norm, the readout
probe's tensors) and
``bank.json`` (format version, concept, classes, model signature, pooling, hyper-parameters, dataset, trained layers,
readout layer, K, the direction method, tensor shapes, the sha256 of the safetensors file and, when recorded, the
command that made it).
Saving writes a temporary folder and renames it into place, so a good bank is never replaced by a half-written one.
Loading verifies checksum, shapes, directions, trained layers and the model signature.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probes.directions import METHODS, ONE_DIRECTION
from probes.rfm import RFMProbe
from studio.errors import BankError, RFMError
from studio.model import ModelSignature

log = logging.getLogger(__name__)

BANK_FORMAT = "musicrfm-concept-bank"
BANK_VERSION = 1
TENSORS_FILE = "bank.safetensors"
META_FILE = "bank.json"
POOLINGS = ("mean", "last", "max")  # how a clip's per-step states become one vector (probes/activations.py)
REGRESSION_CLASSES = ["value"]
_READOUT_PREFIX = "readout."
_UNIT_TOLERANCE = 1e-3


def train_command(model_id: str, concept: str, out: str | os.PathLike = "<folder>") -> str:
    """The CLI command that (re)trains a bank."""
    return f"python -m probes train --model {model_id} --concept {concept} --out {out}"


@dataclass
class ConceptBank:
    concept: str  # "notes", "chords", ...
    classes: list[str]  # class names; ["value"] for regression concepts
    directions: torch.Tensor  # [L, C, K, d] float32 unit vectors (see module docstring)
    val_score: torch.Tensor  # [L, C] float32 validation AUC (R^2 for regression concepts)
    readout_layer: int  # decoder layer of the readout probe
    readout: RFMProbe  # multiclass (or regression) probe at readout_layer
    signature: ModelSignature  # the model the bank was trained for
    pooling: str  # "mean" | "last" | "max"
    hparams: dict  # RFM hyper-parameters used
    dataset: dict  # description of the training data
    eigenvalues: torch.Tensor | None = None  # [L, C, K] float32 AGOP eigenvalues of the directions (M rescaled)
    val_metric: str = "auc"  # "auc", or "r2" for regression concepts
    layers: tuple[int, ...] | None = None  # trained decoder layers, ascending; None: every layer
    command: str | None = None  # the exact command that made the bank; None when not recorded (older banks)
    method: str = "rfm"  # how the directions were found (probes/directions.py); older banks are RFM banks
    # [L] float32: each layer's typical residual norm, the median over the training clips of the mean norm over their
    # steps (what a strength is a push against); None for banks saved before it was measured
    residual_norm: torch.Tensor | None = None

    def __post_init__(self):
        if self.layers is None:
            self.layers = tuple(range(self.directions.shape[0]))
        self.layers = tuple(int(layer) for layer in self.layers)

    @property
    def num_layers(self) -> int:
        return self.directions.shape[0]

    @property
    def trained_val_score(self) -> torch.Tensor:
        """[len(layers), C]: the validation scores of the trained layers only (the others are NaN)."""
        return self.val_score[list(self.layers)]

    def is_trained(self, layer: int) -> bool:
        return layer in self.layers

    def describe_layers(self) -> str:
        """'all 6 layers' or 'layers 6, 12, 18 of 24', for messages."""
        if len(self.layers) == self.num_layers:
            return f"all {self.num_layers} layers"
        noun = "layer" if len(self.layers) == 1 else "layers"
        return f"{noun} {', '.join(map(str, self.layers))} of {self.num_layers}"

    @property
    def num_components(self) -> int:
        return self.directions.shape[2]

    def class_index(self, name: str) -> int:
        """Index of class ``name``; BankError naming the available classes when the bank has no such class."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise BankError(
                f"the {self.concept!r} bank has no class {name!r}; available classes: {', '.join(self.classes)}"
            ) from None

    def validate(self, where: str = "the bank") -> None:
        """Check shapes against the signature and classes, the trained layers, that every trained direction is a finite
        unit vector with a finite score and that untrained layers hold zero directions and NaN scores."""
        L, C, d = self.signature.num_layers, len(self.classes), self.signature.hidden_size
        if self.directions.ndim != 4 or self.directions.shape[:2] != (L, C) or self.directions.shape[3] != d:
            raise BankError(
                f"{where} has directions of shape {list(self.directions.shape)}, expected "
                f"[{L}, {C}, K, {d}] for {self.signature.describe()} and {C} classes"
            )
        if tuple(self.val_score.shape) != (L, C):
            raise BankError(f"{where} has val_score of shape {list(self.val_score.shape)}, expected [{L}, {C}]")
        if self.eigenvalues is not None and tuple(self.eigenvalues.shape) != tuple(self.directions.shape[:3]):
            raise BankError(
                f"{where} has eigenvalues of shape {list(self.eigenvalues.shape)}, expected "
                f"{list(self.directions.shape[:3])}"
            )
        check_layers(self.layers, L, f"the trained layers of {where}")
        trained = list(self.layers)
        if not torch.isfinite(self.val_score[trained]).all():
            raise BankError(f"{where} has NaN/infinite validation scores; retrain it")
        if self.readout_layer not in self.layers:
            raise BankError(
                f"{where} has readout layer {self.readout_layer}, which is not one of its trained "
                f"{self.describe_layers()}"
            )
        if self.pooling not in POOLINGS:
            raise BankError(f"{where} has pooling {self.pooling!r}; expected one of {POOLINGS}")
        self._validate_method(where)
        norm = self.residual_norm
        if norm is not None and (norm.shape != (L,) or not torch.isfinite(norm).all() or not (norm > 0).all()):
            raise BankError(f"{where} has residual norms {norm.tolist()}; expected {L} positive numbers, one per layer")
        self._validate_untrained(where)
        directions = self.directions[trained]
        if not torch.isfinite(directions).all():
            bad = _first_bad((~torch.isfinite(directions)).any(-1))
            raise BankError(
                f"{where} has NaN/infinite directions (first at layer {trained[bad[0]]}, class "
                f"{self.classes[bad[1]]!r}); retrain it"
            )
        norms = directions.norm(dim=-1)
        if (norms < 1e-6).any():
            bad = _first_bad(norms < 1e-6)
            raise BankError(
                f"{where} has zero-norm directions (first at layer {trained[bad[0]]}, class "
                f"{self.classes[bad[1]]!r}, component {bad[2]}); retrain it"
            )
        if ((norms - 1).abs() > _UNIT_TOLERANCE).any():
            raise BankError(f"{where} has directions that are not unit vectors; retrain it")
        if self.readout.centers.shape[1] != d:
            raise BankError(f"{where} has a readout probe of width {self.readout.centers.shape[1]}, expected {d}")

    def _validate_method(self, where: str) -> None:
        """A known method, and one direction per class for the methods that have one."""
        if self.method not in METHODS:
            raise BankError(f"{where} has method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.method in ONE_DIRECTION and self.num_components != 1:
            raise BankError(
                f"{where} has {self.num_components} directions per class, but its method {self.method} gives one"
            )

    def _validate_untrained(self, where: str) -> None:
        """Untrained layers must look untrained, so nothing can rank or steer with them by accident."""
        untrained = [layer for layer in range(self.num_layers) if layer not in self.layers]
        if not untrained:
            return
        if not torch.isnan(self.val_score[untrained]).all():
            raise BankError(
                f"{where} has validation scores on layers it was not trained on (it has "
                f"{self.describe_layers()}); retrain it"
            )
        tensors = [self.directions[untrained]] + ([] if self.eigenvalues is None else [self.eigenvalues[untrained]])
        if any(bool(t.ne(0).any()) for t in tensors):
            raise BankError(
                f"{where} has directions on layers it was not trained on (it has {self.describe_layers()}); retrain it"
            )

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank folder atomically: a temporary sibling folder, renamed into place only when complete.

        Other files already in an existing bank folder (plots, notes) are carried over."""
        self.validate()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BankError(f"cannot save a bank to {path}: it exists and is not a folder")
        tensors, meta = self._to_files()
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
            save_file(tensors, str(tmp / TENSORS_FILE))
            meta["sha256"] = _sha256(tmp / TENSORS_FILE)
            _write_text(tmp / META_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")
            for file in (TENSORS_FILE, META_FILE):  # mkdtemp and safetensors make owner-only files
                os.chmod(tmp / file, 0o644)
            os.chmod(tmp, 0o755)
            _swap_into_place(tmp, path)
        except BaseException as err:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                raise BankError(f"could not save the bank to {path} ({err}); nothing there was changed") from err
            raise

    def _to_files(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        readout_tensors, readout_scalars = self.readout.state_dict()
        tensors = {"directions": self.directions, "val_score": self.val_score}
        if self.eigenvalues is not None:
            tensors["eigenvalues"] = self.eigenvalues
        if self.residual_norm is not None:
            tensors["residual_norm"] = self.residual_norm
        tensors.update({_READOUT_PREFIX + k: v for k, v in readout_tensors.items()})
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
        meta = {
            "format": BANK_FORMAT,
            "version": BANK_VERSION,
            "concept": self.concept,
            "classes": list(self.classes),
            "signature": {f.name: getattr(self.signature, f.name) for f in fields(ModelSignature)},
            "pooling": self.pooling,
            "hparams": self.hparams,
            "dataset": self.dataset,
            "layers": list(self.layers),
            "readout_layer": int(self.readout_layer),
            "K": int(self.num_components),
            "val_metric": self.val_metric,
            "method": self.method,
            "readout": readout_scalars,
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
        }
        if self.command is not None:  # an optional field: older banks lack it, and read the same (no version bump)
            meta["command"] = self.command
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise BankError(f"bank metadata (hparams/dataset) must be plain JSON values: {err}") from None
        return tensors, meta

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptBank":
        """Read and verify a bank folder (checksum, shapes, directions, trained layers). Whether it fits the loaded
        model is studio.banks's check."""
        path = Path(path)
        meta = _read_meta(path)
        concept = str(meta.get("concept", "<concept>"))
        signature = _meta_signature(meta, path)
        retrain = train_command(signature.model_id, concept, path)
        tensor_file = path / TENSORS_FILE
        damaged = f"the concept bank file {tensor_file} is damaged ({{}}); retrain it with: {retrain}"
        if not tensor_file.is_file():
            raise BankError(damaged.format("missing"))
        if _sha256(tensor_file) != meta.get("sha256"):
            raise BankError(damaged.format("checksum mismatch: truncated or modified"))
        try:
            # Cloned: safetensors buffers can be unaligned, which changes BLAS summation order (the last bits).
            tensors = {k: v.clone() for k, v in load_file(str(tensor_file)).items()}
        except (SafetensorError, OSError, ValueError) as err:
            raise BankError(damaged.format(f"unreadable: {err}")) from None
        expected_shapes = meta.get("tensors", {})
        if {k: list(v.shape) for k, v in tensors.items()} != expected_shapes:
            raise BankError(damaged.format("its tensors do not match the shapes recorded in bank.json"))
        try:
            readout = RFMProbe.from_state(
                {k[len(_READOUT_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_READOUT_PREFIX)},
                meta["readout"],
            )
            bank = cls(
                concept=concept,
                classes=[str(c) for c in meta["classes"]],
                directions=tensors["directions"],
                val_score=tensors["val_score"],
                readout_layer=int(meta["readout_layer"]),
                readout=readout,
                signature=signature,
                pooling=str(meta["pooling"]),
                hparams=dict(meta["hparams"]),
                dataset=dict(meta["dataset"]),
                eigenvalues=tensors.get("eigenvalues"),
                val_metric=str(meta.get("val_metric", "auc")),
                layers=_meta_layers(meta),
                command=None if meta.get("command") is None else str(meta["command"]),
                method=str(meta.get("method", "rfm")),
                residual_norm=tensors.get("residual_norm"),
            )
        except (KeyError, TypeError, ValueError, RFMError) as err:
            raise BankError(damaged.format(f"incomplete metadata or tensors: {err!r}")) from None
        bank.validate(where=f"the concept bank at {path}")
        return bank


def check_layers(layers, num_layers: int, what: str) -> None:
    """A trained-layer list must be non-empty, ascending without repeats and inside 0..num_layers-1."""
    layers = list(layers)
    if not layers:
        raise BankError(f"{what} must name at least one decoder layer of 0..{num_layers - 1}")
    if any(not 0 <= layer < num_layers for layer in layers):
        raise BankError(f"{what} must be decoder layers 0..{num_layers - 1}, got {layers}")
    if layers != sorted(set(layers)):
        raise BankError(f"{what} must list each layer once, in ascending order, got {layers}")


def _meta_layers(meta: dict) -> tuple[int, ...] | None:
    """The trained layers recorded in bank.json; banks saved before the field existed hold every layer (None)."""
    raw = meta.get("layers")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(layer, int) and not isinstance(layer, bool) for layer in raw):
        raise TypeError(f"layers must be a list of layer indices, got {raw!r}")
    return tuple(raw)


def _meta_signature(meta: dict, path: Path) -> ModelSignature:
    try:
        raw = meta["signature"]
        return ModelSignature(
            model_id=str(raw["model_id"]),
            config_hash=str(raw["config_hash"]),
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_layers"]),
        )
    except (KeyError, TypeError, ValueError):
        raise BankError(
            f"the concept bank metadata {path / META_FILE} has no valid model signature; it is damaged, "
            f"retrain the bank with: {train_command('<model>', meta.get('concept', '<concept>'), path)}"
        ) from None


def _read_meta(path: Path) -> dict:
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise BankError(
            f"no concept bank at {path} (expected a folder with {META_FILE} and {TENSORS_FILE}); "
            f"train one with: {train_command('<model>', '<concept>', path)}"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BankError(
            f"the concept bank metadata {meta_file} is damaged ({err}); retrain the bank with: "
            f"{train_command('<model>', '<concept>', path)}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
        raise BankError(
            f"{meta_file} is not a concept bank file; retrain the bank with: "
            f"{train_command('<model>', '<concept>', path)}"
        )
    if meta.get("version") != BANK_VERSION:
        raise BankError(
            f"the concept bank at {path} has format version {meta.get('version')!r}; this studio reads "
            f"version {BANK_VERSION}. Retrain it with: "
            f"{train_command('<model>', meta.get('concept', '<concept>'), path)}"
        )
    return meta


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_text(file: Path, text: str) -> None:
    with open(file, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``; an existing ``path`` is moved aside first and restored if the
    rename fails, then deleted. Files of the old folder that the new one lacks are copied over first."""
    if not path.exists():
        os.rename(tmp, path)
        return
    for entry in path.iterdir():
        if not (tmp / entry.name).exists():
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
    aside = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _first_bad(mask: torch.Tensor) -> list[int]:
    return [int(i) for i in mask.nonzero()[0]]
