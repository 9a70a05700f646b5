"""The methods experiment: the concept's directions as each direction method finds them (probes/directions.py) and,
for RFM, each of its top four AGOP eigenvectors (the paper's open question 2), steered alike and judged alike.

Every method's bank is trained here on the same SynTheory clips, split and layers as the --bank's bank (its recorded
dataset says which), from the same activation cache, into ``<out>/banks/<method>/<concept>``; a bank already there
that was made from the same data is reused, and the --bank's bank stands for its own method. Each arm (a method and
one of its directions) is steered at every --strengths value with the sweep's default layer mode and gate (exp0.95 and
p 0.3 when listed), towards every target, over every prompt and seed. All arms are judged by the --bank's readout probe
(one judge for every method), the DSP check and basic-pitch, and their drift is measured from the one baseline.

The clips of RFM's first direction through the --bank's bank are the sweep's clips of the same condition (same
recipe, same file), so a run with both experiments renders them once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from probes.bank import META_FILE, ConceptBank
from probes.directions import ONE_DIRECTION
from studio.errors import BankError, EvaluationError

from .conditions import Condition
from .figures import pareto_figure
from .report import mean_columns, write_csv
from .runner import Context, Job, slug
from .sweep import accuracy_axis, condition_jobs, strength_conditions, target_rows

log = logging.getLogger(__name__)

AGOP_COMPONENTS = 4  # RFM's directions compared one by one: its top AGOP eigenvectors 0..3


@dataclass(frozen=True)
class Arm:
    """One way to steer the concept: a method's bank (as a recipe's bank field) and one of its directions."""

    method: str
    component: int
    bank_field: str | None

    @property
    def name(self) -> str:
        return self.method if self.method in ONE_DIRECTION else f"{self.method} #{self.component}"


def _method_bank(ctx: Context, method: str) -> tuple[str | None, ConceptBank]:
    """(bank field, bank) of `method` for the concept: the --bank's bank when it is that method's, else one trained on
    its data (or reused from an earlier run), registered with the clip store."""
    if ctx.bank.method == method:
        return ctx.settings.bank, ctx.bank
    root = ctx.out / "banks" / method
    field = str(root)
    registered = ctx.store.bank_set(field)
    if registered is None:
        folder = root / ctx.settings.concept
        bank = _reuse(folder, method, ctx.bank) or _train(ctx, method, folder)
        ctx.store.add_banks(field, {ctx.settings.concept: bank})
        return field, bank
    return field, registered[ctx.settings.concept]


def _reuse(folder, method: str, base: ConceptBank) -> ConceptBank | None:
    """The bank in `folder` when `method` made it from `base`'s data for `base`'s model, else None."""
    if not (folder / META_FILE).is_file():
        return None
    try:
        bank = ConceptBank.load(folder)
    except BankError as error:
        log.warning("making %s again: %s", folder, error)
        return None
    same_data = bank.dataset == base.dataset and bank.layers == base.layers and bank.pooling == base.pooling
    return bank if same_data and bank.signature == base.signature and bank.method == method else None


def _train(ctx: Context, method: str, folder) -> ConceptBank:
    """`method`'s bank on the clips, split, layers and pooling the --bank's bank was trained with; saved in `folder`."""
    from probes.train import TrainOptions, train_concept_bank

    base, concept = ctx.bank, ctx.settings.concept
    data = base.dataset
    if data.get("source") != "syntheory-generated":
        raise EvaluationError(
            f"the methods experiment trains each method on the data of the '{concept}' bank, but that bank was "
            f"trained on {data.get('source', 'unrecorded data')}, which it cannot render again; use a bank made by "
            "`python -m probes train`"
        )
    log.info("training the %s bank of %s on the data of %s's bank", method, concept, base.method)
    options = TrainOptions(
        instruments=data["instruments"],
        octaves=data["octaves"],
        max_per_class=data["max_per_class"],
        val_fraction=data["val_fraction"],
        seed=data["split_seed"],
        pooling=base.pooling,
        method=method,
        components=max(base.num_components, AGOP_COMPONENTS),
        readout_layer=base.readout_layer,
        layers=base.layers,
        hparams=dict(base.hparams),  # the same bandwidths: the readout probe is fitted as the --bank's was
        device=ctx.settings.device,
        progress=ctx.settings.progress,
    )
    bank = train_concept_bank(ctx.loaded, concept, options)
    if bank.dataset != data:
        raise EvaluationError(
            f"the {method} bank of '{concept}' was trained on other clips than its --bank bank "
            f"({bank.dataset} against {data}): were the SynTheory renders made with another soundfont or renderer?"
        )
    bank.save(folder)
    return bank


def _arms(ctx: Context) -> list[tuple[Arm, ConceptBank]]:
    """Every method's first direction, and RFM's directions 0..3 each."""
    arms = []
    for method in ctx.settings.methods:
        field, bank = _method_bank(ctx, method)
        components = range(min(AGOP_COMPONENTS, bank.num_components)) if method == "rfm" else [0]
        arms += [(Arm(method, component, field), bank) for component in components]
    return arms


def arm_jobs(ctx: Context, arm: Arm, condition: Condition) -> list[Job]:
    """One clip per target, prompt and seed. RFM's first direction through the --bank's bank is the sweep's clip."""
    same_as_sweep = arm.bank_field == ctx.settings.bank and arm.component == 0
    folder = "sweep" if same_as_sweep else f"methods/{slug(arm.method)}-c{arm.component}"
    info = {"method": arm.method, "component": arm.component}
    return condition_jobs(ctx, condition, folder, arm.component, arm.bank_field, info)


def methods_jobs(ctx: Context) -> list[Job]:
    conditions = strength_conditions(ctx)
    return [job for arm, _ in _arms(ctx) for condition in conditions for job in arm_jobs(ctx, arm, condition)]


def run_methods(ctx: Context) -> tuple[list[dict], dict]:
    """Render and measure every arm at every strength; write methods.csv and the accuracy-against-drift figure."""
    s, concept, L = ctx.settings, ctx.settings.concept, ctx.loaded.num_layers
    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)
    arms = _arms(ctx)  # first: a bank that cannot be made stops the run before any clip is rendered
    conditions = strength_conditions(ctx)  # once: resolving them warns about clamped layer modes
    baseline = ctx.baseline()
    clip_rows = []
    table = [
        {
            "arm": "baseline",
            "method": "",
            "component": "",
            "val_score": "",
            "condition": "baseline",
            "strength": 0.0,
            "layers": "",
            "gate_p": "",
            "concept": concept,
            **mean_columns(target_rows(ctx, baseline, lambda i: ctx.targets, "methods"), **stats),
            **ctx.drift(baseline.facts),
        }
    ]
    for arm, bank in arms:
        score = _val_score(bank, [bank.class_index(t) for t in ctx.targets], arm.component)
        for condition in conditions:
            jobs = arm_jobs(ctx, arm, condition)
            rendered = ctx.render_and_measure(jobs, f"{arm.name} {condition.name}", [concept])
            rows = target_rows(ctx, rendered, lambda i: [rendered.jobs[i].info["target"]], "methods")
            clip_rows += rows
            per_target = [[i for i, job in enumerate(jobs) if job.info["target"] == t] for t in ctx.targets]
            table.append(
                {
                    "arm": arm.name,
                    "method": arm.method,
                    "component": arm.component,
                    "val_score": score,
                    "condition": f"{arm.name} {condition.name}",
                    "strength": condition.strength,
                    "layers": condition.layers,
                    "gate_p": condition.gate_p,
                    "concept": concept,
                    **mean_columns(rows, **stats),
                    **ctx.drift(rendered.facts, per_target),
                }
            )
    files = [write_csv(ctx.out / "methods.csv", table)]
    y, y_title, y_range = accuracy_axis(table[0])
    figure = pareto_figure(
        table[1:],
        table[0],
        "fd_acts",
        y,
        "Frechet distance to baseline (activations)",
        y_title,
        True,
        f"{concept}: direction methods, control against drift",
        y_range,
        series=lambda row: row["arm"],
        legend_title="method #direction (label: strength)",
    )
    files += ctx.figure(figure, "methods_drift")
    summary = {
        "methods": list(s.methods),
        "arms": [arm.name for arm, _ in arms],
        "banks": {arm.method: arm.bank_field for arm, _ in arms},
        "conditions": [c.to_dict(L) for c in conditions],
        "table": table,
        "files": [str(f.relative_to(ctx.out)) for f in files],
    }
    return clip_rows, summary


def _val_score(bank: ConceptBank, classes: list[int], component: int) -> float | str:
    """The bank's mean validation score over its trained layers and the targets' classes (the probes' AUC for RFM,
    the first direction's for the others; R^2 for regression), for the first direction only: "" for the others."""
    if component:
        return ""
    return float(torch.nanmean(bank.val_score[list(bank.layers)][:, classes].double()))
