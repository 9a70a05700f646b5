"""The multi-concept experiment: steer two concepts at once (notes + chords by default) and measure each concept's
accuracy against the baseline, the drift, and how much the two directions overlap (their cosine per layer)."""

from __future__ import annotations

from .conditions import PAPER_DEFAULT, Condition
from .figures import interference_figure
from .metrics import direction_cosines
from .report import mean_columns, write_csv
from .runner import Context, Job, slug


def default_pairs(first: list[str], second: list[str]) -> list[tuple[str, str]]:
    """Two pairs: the first class of each list, then the second of each (wrapping around short lists)."""
    return [(first[i % len(first)], second[i % len(second)]) for i in range(2)]


def _pairs(ctx: Context) -> list[tuple[str, str]]:
    s = ctx.settings
    # explicit pairs were checked by Context
    return s.multi_pairs or default_pairs(ctx.targets, ctx.banks[s.multi_concept].classes)


def _condition(ctx: Context) -> Condition:
    return Condition(ctx.settings.multi_strength, PAPER_DEFAULT[1], PAPER_DEFAULT[2])


def pair_jobs(ctx: Context, pair: tuple[str, str]) -> list[Job]:
    """One clip per prompt and seed, steering both concepts towards the pair's classes."""
    s, L, condition = ctx.settings, ctx.loaded.num_layers, _condition(ctx)
    controls = [condition.control(c, name, L) for c, name in zip((s.concept, s.multi_concept), pair)]
    info = {"condition": f"multi-{condition.name}", "pair": "+".join(pair)}
    return ctx.prompt_seed_jobs(f"multi/{slug(pair[0])}+{slug(pair[1])}", "", info, controls)


def multi_jobs(ctx: Context) -> list[Job]:
    return [job for pair in _pairs(ctx) for job in pair_jobs(ctx, pair)]


def run_multi(ctx: Context) -> tuple[list[dict], dict]:
    """Render and measure the two-concept clips; write multi.csv, interference.csv and the figure."""
    s = ctx.settings
    concepts = (s.concept, s.multi_concept)
    banks = [ctx.banks[c] for c in concepts]
    pairs, condition = _pairs(ctx), _condition(ctx)
    stats = dict(confidence=s.confidence, resamples=s.resamples, seed=s.ci_seed)
    baseline = ctx.baseline()

    rows, table, interference, cosines = [], [], [], {}
    for pair in pairs:
        label = "+".join(pair)
        jobs = pair_jobs(ctx, pair)
        rendered = ctx.render_and_measure(jobs, f"multi {label}", list(concepts))
        drift = ctx.drift(rendered.facts)
        for concept, target in zip(concepts, pair):
            steered = [
                {
                    "experiment": "multi",
                    **rendered.base_row(i, ctx.out),
                    "concept": concept,
                    "target": target,
                    **rendered.facts.target_row(i, concept, target),
                }
                for i in range(len(jobs))
            ]
            unsteered = [{**baseline.facts.target_row(i, concept, target)} for i in range(len(baseline.jobs))]
            rows += steered
            table.append(
                {
                    "pair": label,
                    "concept": concept,
                    "target": target,
                    "condition": condition.name,
                    **mean_columns(steered, **stats),
                    **{f"baseline_{k}": v for k, v in mean_columns(unsteered, **stats).items()},
                    **drift,
                }
            )
        cos = direction_cosines(
            banks[0].directions[:, banks[0].class_index(pair[0]), 0],
            banks[1].directions[:, banks[1].class_index(pair[1]), 0],
        )
        cosines[label] = cos
        interference += [{"pair": label, "layer": layer, "cosine": float(value)} for layer, value in enumerate(cos)]
    files = [write_csv(ctx.out / "multi.csv", table), write_csv(ctx.out / "interference.csv", interference)]
    files += ctx.figure(interference_figure(cosines), "interference")
    summary = {
        "concepts": list(concepts),
        "condition": condition.name,
        "pairs": [list(p) for p in pairs],
        "table": table,
        "interference": {k: [float(v) for v in c] for k, c in cosines.items()},
        "files": [str(f.relative_to(ctx.out)) for f in files],
    }
    return rows, summary
