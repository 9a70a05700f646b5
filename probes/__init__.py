"""The offline pipeline: SynTheory audio, activations, RFM probes, concept banks (their file format and training) and
the evaluation harness. `python -m probes train|eval`."""
