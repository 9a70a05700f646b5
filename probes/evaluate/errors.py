"""The evaluation harness's one exception type."""


class EvaluationError(Exception):
    """An evaluation cannot run as asked (bad input, missing files, inconsistent sets); the message says what to do."""
