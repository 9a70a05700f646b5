"""Tests for studio/hooks.py: the exact delta at every (step, layer), CFG halves, capture and hook removal.

Plans here use dyadic coefficients and directions (multiples of 1/4, entries +-1/2), so the closed-form delta
sum_k c[t, l, k] v[l, k] is exact in float32 whatever the summation order, and "equal" means bit-equal.
"""

from types import SimpleNamespace

import pytest
import torch

from studio.hooks import HookManager, decoder_hooks
from studio.plan import SteeringPlan


def dyadic_plan(
    steps: int,
    layers: int,
    width: int,
    controls: int = 3,
    seed: int = 0,
    cfg_mode: str = "both",
    only_layer: int | None = None,
) -> SteeringPlan:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randint(-4, 5, (steps, layers, controls), generator=gen).float() / 4
    if only_layer is not None:
        keep = torch.zeros(layers, dtype=torch.bool)
        keep[only_layer] = True
        c[:, ~keep] = 0.0
    V = torch.zeros(layers, controls, width)
    for layer in range(layers):
        for k in range(controls):
            coords = torch.randperm(width, generator=gen)[:4]
            signs = torch.randint(0, 2, (4,), generator=gen).float() * 2 - 1
            V[layer, k, coords] = 0.5 * signs  # a unit vector with exact entries
    return SteeringPlan(
        coefficients=c,
        directions=V,
        cfg_mode=cfg_mode,
        labels=tuple(f"k{k}" for k in range(controls)),
        layer_weights=torch.ones(layers, controls),
        schedules=torch.ones(steps, controls),
        gates=torch.ones(steps, layers, controls, dtype=torch.bool),
    )


def closed_form_delta(plan: SteeringPlan, step: int, layer: int) -> torch.Tensor:
    total = torch.zeros(plan.directions.shape[-1], dtype=torch.float64)
    for k in range(plan.num_controls):
        total += float(plan.coefficients[step, layer, k]) * plan.directions[layer, k].double()
    return total.float()


class Observer:
    """Records each layer's output per decoder forward, with the step (KV-cache length) of that forward."""

    def __init__(self, loaded):
        self.loaded, self.records, self.step = loaded, [], None

    def attach(self):
        handles = [self.loaded.model.decoder.model.decoder.register_forward_pre_hook(self._step, with_kwargs=True)]
        for layer, module in enumerate(self.loaded.decoder_layers()):
            handles.append(
                module.register_forward_hook(
                    lambda m, a, out, layer=layer: self.records.append((self.step, layer, out.detach().clone()))
                )
            )
        return handles

    def _step(self, module, args, kwargs):
        cache = kwargs.get("cache")
        self.step = cache.get_seq_length() if cache is not None else 0


def remove(handles):
    for handle in handles:
        handle.remove()


def hook_count(loaded) -> int:
    return len(decoder_hooks(loaded.model.decoder.model.decoder))


def run_generate(loaded, steps: int, guidance: float, seed: int = 0, greedy: bool = True):
    inputs = loaded.tokenizer(["calm piano"], return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    with torch.inference_mode():
        return loaded.model.generate(**inputs, max_new_tokens=steps, guidance_scale=guidance, do_sample=not greedy)


@pytest.mark.parametrize("cfg_mode", ["both", "cond_only"])
def test_every_step_and_layer_adds_the_closed_form_delta_during_generation(tiny, cfg_mode):
    steps = 20
    plan = dyadic_plan(steps, tiny.num_layers, tiny.hidden_size, cfg_mode=cfg_mode, seed=3)
    before, after = Observer(tiny), Observer(tiny)
    handles = before.attach()  # registered first: sees each output before the steering hook
    try:
        with HookManager(tiny, plan, cfg=True) as manager:
            handles += after.attach()  # registered last: sees the steered output
            run_generate(tiny, steps, guidance=3.0)
            assert manager.positions == 0  # nothing captured without a capture layer
    finally:
        remove(handles)
    assert len(before.records) == len(after.records) == manager.forwards * tiny.num_layers
    seen = set()
    for (step, layer, pre), (step2, layer2, post) in zip(before.records, after.records):
        assert (step, layer) == (step2, layer2) and pre.shape == (2, 1, tiny.hidden_size)
        delta = closed_form_delta(plan, step, layer)
        assert torch.equal(post[0, 0], pre[0, 0] + delta)
        if cfg_mode == "both":
            assert torch.equal(post[1, 0], pre[1, 0] + delta)
        else:
            assert torch.equal(post[1, 0], pre[1, 0])
        seen.add(step)
    assert seen == set(range(steps))  # one step per generated position, counted from 0
    assert hook_count(tiny) == 0


def test_a_forward_over_several_positions_steers_each_with_its_own_step(tiny):
    positions, layer = 7, 2
    plan = dyadic_plan(5, tiny.num_layers, tiny.hidden_size, seed=4, only_layer=layer)  # shorter than the input
    ids = torch.randint(0, 256, (tiny.num_codebooks, positions), generator=torch.Generator().manual_seed(0))
    enc = torch.randn(1, 3, tiny.hidden_size, generator=torch.Generator().manual_seed(1))
    decoder = tiny.model.decoder.model.decoder
    plain, steered = Observer(tiny), Observer(tiny)
    with torch.inference_mode():
        handles = plain.attach()
        decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False)
        remove(handles)
        with HookManager(tiny, plan, capture_layer=layer, steps=positions) as manager:
            handles = steered.attach()
            decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False)
            remove(handles)
    for (_, lay, base), (_, _, out) in zip(plain.records, steered.records):
        if lay < layer:
            assert torch.equal(out, base)
        elif lay == layer:
            for p in range(positions):
                expected = closed_form_delta(plan, p, layer) if p < plan.steps else torch.zeros(tiny.hidden_size)
                assert torch.equal(out[0, p], base[0, p] + expected)
            assert torch.equal(manager.states, out[0])  # the capture is the steered output
            assert manager.positions == positions


@pytest.mark.parametrize("cfg_mode, uncond_changes", [("cond_only", False), ("both", True)])
def test_cond_only_leaves_the_unconditional_half_bit_identical(tiny, cfg_mode, uncond_changes):
    plan = dyadic_plan(6, tiny.num_layers, tiny.hidden_size, seed=5, cfg_mode=cfg_mode)
    ids = torch.randint(0, 256, (2 * tiny.num_codebooks, 6), generator=torch.Generator().manual_seed(2))
    enc = torch.randn(1, 3, tiny.hidden_size, generator=torch.Generator().manual_seed(3))
    enc = torch.cat([enc, torch.zeros_like(enc)])  # [conditional; unconditional] as MusicGen's CFG builds it
    decoder = tiny.model.decoder.model.decoder
    with torch.inference_mode():
        base = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False).last_hidden_state
        with HookManager(tiny, plan, cfg=True):
            out = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False).last_hidden_state
    assert not torch.equal(out[0], base[0])
    assert torch.equal(out[1], base[1]) is not uncond_changes


def test_capture_holds_the_readout_layer_output_of_the_conditional_row(tiny):
    steps, layer = 12, 3
    observer = Observer(tiny)
    with HookManager(tiny, None, capture_layer=layer, steps=steps, cfg=True) as manager:
        handles = observer.attach()
        try:
            run_generate(tiny, steps, guidance=3.0)
        finally:
            remove(handles)
    assert manager.positions == steps and manager.forwards >= steps
    for step, lay, out in observer.records:
        if lay == layer:
            assert torch.equal(manager.states[step], out[0, 0])


def test_hooks_are_removed_when_the_block_raises(tiny):
    plan = dyadic_plan(4, tiny.num_layers, tiny.hidden_size)
    with pytest.raises(RuntimeError, match="boom"):
        with HookManager(tiny, plan, capture_layer=1, steps=4):
            assert hook_count(tiny) == 1 + tiny.num_layers
            raise RuntimeError("boom")
    assert hook_count(tiny) == 0


def test_an_all_zero_plan_is_bit_identical_to_no_hooks(tiny):
    steps = 25
    plan = dyadic_plan(steps, tiny.num_layers, tiny.hidden_size)
    zero = SteeringPlan(
        torch.zeros_like(plan.coefficients),
        plan.directions,
        "both",
        plan.labels,
        plan.layer_weights,
        plan.schedules,
        plan.gates,
    )
    for greedy in (True, False):
        reference = run_generate(tiny, steps, guidance=3.0, seed=7, greedy=greedy)
        with HookManager(tiny, zero, capture_layer=2, steps=steps, cfg=True) as manager:
            steered = run_generate(tiny, steps, guidance=3.0, seed=7, greedy=greedy)
        assert manager.forwards > steps - 1  # the hooks really ran
        assert torch.equal(reference, steered)


class _Copy(torch.nn.Module):
    def forward(self, hidden):
        return hidden.clone()


class _Stack(torch.nn.Module):
    """A stand-in decoder stack with the call shape of transformers' (input_ids, cache) and identity layers."""

    def __init__(self, layers: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([_Copy() for _ in range(layers)])

    def forward(self, input_ids=None, cache=None, hidden=None):
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden


class _Cache:
    def __init__(self, length):
        self.length = length

    def get_seq_length(self):
        return self.length


@pytest.mark.parametrize("as_tensor", [False, True])
def test_the_step_is_read_from_the_cache_as_an_int_or_a_device_tensor(as_tensor):
    """Our own decode loop's static cache reports its length as a 0-dim device tensor (CUDA-graph replay)."""
    layers, width, steps = 3, 8, 9
    stack = _Stack(layers)
    loaded = SimpleNamespace(
        decoder_stack=lambda: stack,
        decoder_layers=lambda: stack.layers,
        dtype=torch.float32,
        device=torch.device("cpu"),
        hidden_size=width,
        takes_melody=False,
    )
    plan = dyadic_plan(8, layers, width, seed=6)  # one step shorter than the capture
    hidden = torch.randint(-8, 9, (2, 2, width), generator=torch.Generator().manual_seed(7)).float() / 4
    start = torch.tensor(7) if as_tensor else 7
    with HookManager(loaded, plan, capture_layer=layers - 1, steps=steps, cfg=True) as manager:
        out = stack(input_ids=torch.zeros(8, 2, dtype=torch.long), cache=_Cache(start), hidden=hidden)
    total = sum(closed_form_delta(plan, 7, layer) for layer in range(layers))
    assert torch.equal(out[:, 0], hidden[:, 0] + total)  # position 7: the plan's last step
    assert torch.equal(out[:, 1], hidden[:, 1])  # position 8: past the plan, nothing added
    assert torch.equal(manager.states[7:9], out[0]) and manager.positions == steps
