"""HookManager: apply a SteeringPlan inside MusicGen's decoder and capture the readout layer's states.

Step semantics. Decoder step t computes sequence position t (position 0 is the BOS column; step t predicts the
tokens at position t + 1). Each decoder forward computes the positions ``p0 .. p0 + n - 1`` where ``p0`` is the
length of its KV cache (0 without one), so a forward pre-hook on the decoder stack reads the step from the cache
rather than counting calls. That keeps the counter right when transformers runs the prefill forward twice
(transformers 5.24's MusicGen ``generate`` does) and when a forward recomputes several positions. A melody
checkpoint's decoder first reads its conditioning, a ``prefix`` of P positions (chroma frames and text): step t is
then position P + t, and the prefix's positions are neither steered nor captured.

At decoder layer l, for each computed position t, the layer's output gets ``sum_k c[t, l, k] * V[l, k]`` added
in place (t >= T adds nothing). With classifier-free guidance the decoder batch is [conditional; unconditional]:
``cfg_mode="both"`` steers every row, ``"cond_only"`` only the conditional half. The captured readout state of step t
is the (steered) output of ``capture_layer`` at position t in batch row 0, the conditional row of a one-prompt batch.
With a ``controller`` (studio/control.py: closed-loop controls) each c[t, :, k] is first multiplied by control k's gain
of step t, and the controller reads the captured states as the readout layer makes them.

Per forward the work is a few tensor ops in the pre-hook (the plan rows, one batched matmul with V) and
one in-place add per hooked layer; there is no Python loop over controls. Hooks are removed
on every exit of the ``with`` block: normal, exception or cancellation. The caller must hold ``LoadedModel.lock`` for
the whole block, so that no other request runs the model while it is steered.
"""

from __future__ import annotations

import torch

from studio.control import Controller
from studio.plan import SteeringPlan


def decoder_hooks(stack: torch.nn.Module) -> list:
    """Every forward (pre-)hook on the decoder stack and its submodules, except transformers' own output recorders.

    transformers 5 installs those recorders for good the first time anyone asks the model for hidden states or
    attentions; they do nothing unless such a request is running, which never happens inside our steering or decoding,
    so they are neither steering nor a reason to refuse a CUDA graph.
    """
    return [
        hook
        for module in stack.modules()
        for hook in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        if getattr(hook, "__module__", None) != "transformers.utils.output_capturing"
    ]


def _cache_length(cache):
    """Positions already in the KV cache: a Python int (transformers' caches), or a 0-dim device tensor (our decode
    loop's static cache; it must stay on the device so that a CUDA graph can replay it)."""
    return 0 if cache is None else cache.get_seq_length()


def _new_positions(args: tuple, kwargs: dict, prefixed: bool) -> int:
    """How many sequence positions this decoder forward computes (a melody checkpoint's stack prepends the
    `encoder_hidden_states` it is given: transformers' generate passes the prefix so in its first forward)."""
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    count = int(input_ids.shape[-1]) if input_ids is not None else int(kwargs["inputs_embeds"].shape[1])
    prefix = kwargs.get("encoder_hidden_states")
    return count + (int(prefix.shape[1]) if prefixed and prefix is not None else 0)


class HookManager:
    """Context manager that steers `loaded`'s decoder with `plan` and/or captures `capture_layer`'s states.

    ``plan=None`` steers nothing; ``capture_layer=None`` captures nothing. ``steps`` is the number of decoder steps
    to capture (defaults to the plan's length). ``cfg`` says whether the decoder batch holds an unconditional half.
    ``prefix`` is the length of a melody checkpoint's conditioning prefix (``LoadedModel.prefix_length``; 0 for text
    checkpoints): positions before it are left alone.
    After the block, ``states`` holds [steps, d] float32 captured states and ``positions`` how many of them were
    filled; ``forwards`` counts the decoder forwards Python saw (a CUDA graph replay is not counted).

    The step comes from the KV cache: a Python int (transformers' caches) is used for host indexing, the fewest tensor
    ops per step; a 0-dim device tensor (studio/decode.py's static cache) is used for device indexing only, so the
    hooks are safe to record in a CUDA graph and replay (``cuda_graph_safe``).
    """

    cuda_graph_safe = True

    def __init__(
        self,
        loaded,
        plan: SteeringPlan | None = None,
        capture_layer: int | None = None,
        steps: int | None = None,
        cfg: bool = False,
        prefix: int = 0,
        controller: Controller | None = None,
    ):
        self.decoder = loaded.decoder_stack()
        self.prefix, self.prefixed = prefix, loaded.takes_melody
        self.layers = loaded.decoder_layers()
        self.plan, self.capture_layer, self.cfg = plan, capture_layer, cfg
        if controller is not None and (plan is None or capture_layer is None):
            raise ValueError("a controller needs a plan to scale and the readout layer's states to read")
        self.controller = controller
        self.dtype, self.device = loaded.dtype, loaded.device
        self.steps = steps if steps is not None else (plan.steps if plan is not None else 0)
        # One scratch row past the end takes the positions beyond `steps` (an extra look-ahead forward).
        self._buffer = (
            torch.zeros(self.steps + 1, loaded.hidden_size, dtype=torch.float32, device=loaded.device)
            if capture_layer is not None
            else None
        )
        self.states = self._buffer[: self.steps] if self._buffer is not None else None
        self._filled = torch.zeros((), dtype=torch.long, device=loaded.device)  # captured positions, device steps
        self._filled_host = 0  # ... host steps
        self._start = 0
        self.forwards = 0
        self._handles: list = []
        self._offsets = torch.arange(1, device=loaded.device)
        self._positions: torch.Tensor | None = None  # positions computed by the current forward, on the device
        self._deltas: tuple | None = None  # per layer [n, d], for the current forward
        if plan is not None:
            # One zero row past the end: positions beyond the plan add nothing.
            zero_row = torch.zeros_like(plan.coefficients[:1])
            self._coefficients = torch.cat([plan.coefficients, zero_row]).to(self.device)
            self._directions = plan.directions.to(self.device)

    @property
    def positions(self) -> int:
        """How many of the `steps` positions have been captured (reads the device counter)."""
        return max(self._filled_host, int(self._filled))

    # ------------------------------------------------------------------------------------------------ hook bodies

    def _before_decoder(self, module, args, kwargs):
        self.forwards += 1
        count = _new_positions(args, kwargs, self.prefixed)
        start = _cache_length(kwargs.get("cache")) - self.prefix  # the step of the first position computed
        last_row = self._coefficients.shape[0] - 1 if self.plan is not None else 0
        if isinstance(start, int) and count == 1 and start >= 0 and self.controller is None:
            # The common step of transformers' loop: host indexing, the fewest tensor ops.
            self._start, self._positions = start, None
            if self.plan is not None:
                rows = self._coefficients[min(start, last_row)].unsqueeze(1)  # [L, 1, K]
                self._deltas = torch.bmm(rows, self._directions).to(self.dtype).unbind(0)
            return
        if count > len(self._offsets):
            self._offsets = torch.arange(count, device=self.device)
        self._positions = self._offsets[:count] + start  # device indices: a CUDA graph replays them
        if self.plan is not None:
            rows = self._positions.clamp(max=last_row)  # positions past the plan read its zero row ...
            if self.prefix:  # ... and so do a melody prefix's (negative steps)
                rows = rows.masked_fill(self._positions < 0, last_row)
            rows = self._coefficients.index_select(0, rows)
            if self.controller is not None:  # closed-loop controls: their gains of these steps
                rows = rows * self.controller.gains_for(self._positions)[:, None, :]
            # [L, n, K] @ [L, K, d] -> [L, n, d]: one batched matmul for all layers and controls.
            self._deltas = torch.bmm(rows.transpose(0, 1), self._directions).to(self.dtype).unbind(0)

    def _after_layer(self, layer: int):
        steer = self.plan is not None
        capture = layer == self.capture_layer
        cond_only = steer and self.plan.cfg_mode == "cond_only" and self.cfg

        def hook(module, args, output):
            if isinstance(output, tuple):  # a melody checkpoint's layer returns (states, attention weights)
                output = output[0]
            if steer:
                target = output[: output.shape[0] // 2] if cond_only else output
                target.add_(self._deltas[layer])
            if capture:
                self._capture(output)

        hook.cuda_graph_safe = True
        return hook

    def _capture(self, output: torch.Tensor) -> None:
        if self._positions is None:  # one position at a host step
            if self._start < self.steps:
                self._buffer[self._start].copy_(output[0, 0])
                self._filled_host = max(self._filled_host, self._start + 1)
            return
        rows = self._positions.clamp(max=self.steps)  # positions past the capture go to the scratch row ...
        if self.prefix:  # ... and so do a melody prefix's
            rows = rows.masked_fill(self._positions < 0, self.steps)
        self._buffer.index_copy_(0, rows, output[0].to(torch.float32))
        done = (self._positions[-1] + 1).clamp(0, self.steps)  # positions grow along the forward
        torch.maximum(self._filled, done, out=self._filled)
        if self.controller is not None:
            self.controller.observe(output[0].to(torch.float32), self._positions)

    # ------------------------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "HookManager":
        try:
            self._handles.append(self.decoder.register_forward_pre_hook(self._before_decoder, with_kwargs=True))
            for layer, module in enumerate(self.layers):
                if self.plan is not None or layer == self.capture_layer:
                    self._handles.append(module.register_forward_hook(self._after_layer(layer)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this manager registered (safe to call twice)."""
        while self._handles:
            self._handles.pop().remove()
        self._deltas = self._positions = None
