"""The studio's web page (Gradio): layout (the page and its wiring), handlers (what each event does), session (the
resident model, its banks and running generations), widgets (widget values <-> Recipe), the schedule editor and the
plots. It builds on the runtime core (studio/*) and the probes; nothing in the core imports it."""

from studio.ui.layout import CSS, build_app, serve

__all__ = ["CSS", "build_app", "serve"]
