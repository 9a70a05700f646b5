'use strict';
/* MusicRFM Studio: the drawable schedule editor. Runs as gr.HTML's js_on_load, with `element`, `props`, `trigger`
   and `watch` in scope (see studio/ui/schedule_editor.py). Value: {seconds: S, curves: {name: [[t, v], ...]}}; per
   curve t rises strictly from 0 to S (end points pinned), v in [0, 1] multiplies the control's strength. The model's
   frame rate (decoder steps per second, which the decay preset counts in) comes from Python as
   props.steps_per_second.
   Note for editors of this file: gr.HTML turns any quoted word here into a Python attribute lookup on the component, so
   the constructor's parameter names must not appear inside quotes. */

const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#e8590c', '#1c7ed6', '#2f9e44', '#ae3ec9', '#e03131', '#0c8599', '#d6336c', '#7048e8'];
const MIN_GAP = 0.01;            // s between neighbouring points, so times stay strictly increasing at 0.01 s precision
const DECAY_RATE = 0.998;        // the paper's exponential schedule, per decoder step
const HIT_RADIUS = 12;           // 24 px touch targets
const DOUBLE_TAP_MS = 450;
const KEY_STEP_T = 0.1, KEY_STEP_V = 0.01, KEY_BIG = 10;
const NARROW_PX = 560;

const roundT = (t) => Math.round(t * 100) / 100;
const roundV = (v) => Math.round(v * 1000) / 1000;
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const fmtT = (t) => `${roundT(t)} s`;
const fmtV = (v) => `${Math.round(v * 100)}%`;

// ---- presets (studio/ui/schedule_editor.py computes the same points) ----
function strictlyIncreasing(points, S) {
  const kept = [points[0]];
  for (const p of points.slice(1, -1)) if (p[0] > kept[kept.length - 1][0] && p[0] < S) kept.push(p);
  kept.push(points[points.length - 1]);
  return kept;
}
const stepsPerSecond = () => Number(props.steps_per_second);   // the model's frame rate, set by Python
function decayPoints(S) {
  const n = Math.max(4, Math.ceil(S / 2));
  const pts = [];
  for (let i = 0; i <= n; i++) {
    const t = i === n ? S : roundT((S * i) / n);
    pts.push([t, roundV(Math.pow(DECAY_RATE, stepsPerSecond() * t))]);
  }
  return strictlyIncreasing(pts, S);
}
const PRESETS = {
  constant: (S) => [[0, 1], [S, 1]],
  up: (S) => [[0, 0], [S, 1]],
  down: (S) => [[0, 1], [S, 0]],
  decay: decayPoints,
};

// ---- state ----
const state = {
  S: 10, names: [], curves: {}, selected: null, partner: null,
  given: 0,          // seconds of audio prompt that open the clip: shaded, not steered
  focus: null,       // index of the focused / active point on the selected curve
  drag: null,        // {name, i, pointerId, before, moved}
  lastTap: null,     // {name, i, time} for double-click / double-tap detection
  keyDirty: false, error: null, hint: null, hintTimer: null,
};
let layout = null;
let lastSent = '';
let redrawing = false;   // Chrome fires focusout / focusin while a redraw replaces the focused point; those are ignored

function el(tag, attrs, parent, ns) {
  const node = ns ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}
const svgEl = (tag, attrs, parent) => el(tag, attrs, parent, true);

// ---- skeleton ----
const root = element.querySelector('.se-root');
root.replaceChildren();
const head = el('div', { class: 'se-head' }, root);
const title = el('div', { class: 'se-title' }, head);
const legend = el('div', { class: 'se-legend', role: 'radiogroup', 'aria-label': 'Curve to edit' }, head);
const tools = el('div', {
  class: 'se-tools', role: 'toolbar', 'aria-label': 'Shape presets for the selected curve',
}, root);
const toolsSwatch = el('span', { class: 'se-swatch', 'aria-hidden': 'true' }, tools);
el('span', { class: 'se-tools-label', text: 'Shape:' }, tools);
const presetButtons = [
  ['constant', 'Constant', 'Full strength for the whole clip'],
  ['up', 'Ramp up', 'From silent to full strength'],
  ['down', 'Ramp down', 'From full strength to silent'],
  ['decay', 'Decay',
    `Exponential decay, ${DECAY_RATE} per step at ${stepsPerSecond()} steps/s (the paper\u2019s schedule)`],
].map(([kind, text, tip]) => el('button', {
  type: 'button', class: 'se-btn', 'data-preset': kind, title: tip, text,
}, tools));
const xfade = el('span', { class: 'se-xfade' }, tools);
const xfadeButton = el('button', {
  type: 'button', class: 'se-btn', 'data-preset': 'crossfade',
  title: 'The selected curve fades out while the chosen one fades in',
  text: 'Crossfade into',
}, xfade);
const xfadeSelect = el('select', { class: 'se-select', 'aria-label': 'Crossfade into which control' }, xfade);
el('span', { class: 'se-chevron', 'aria-hidden': 'true' }, xfade);
const plot = el('div', { class: 'se-plot' }, root);
const svg = svgEl('svg', {
  role: 'group', 'aria-label': 'Schedule timeline: time in seconds across, strength up the side',
}, plot);
const help = el('p', { class: 'se-help', 'aria-live': 'polite' }, root);

// ---- value in and out ----
function load(raw) {
  let value = raw;
  state.error = null;
  try {
    if (typeof value === 'string') value = value.trim() ? JSON.parse(value) : null;
  } catch (err) {
    state.error = 'The schedule value is not valid JSON.';
    value = null;
  }
  const ok = value && typeof value === 'object' && value.curves && typeof value.curves === 'object';
  const curves = ok ? value.curves : {};
  state.S = value && Number(value.seconds) > 0 ? Number(value.seconds) : state.S;
  state.given = value && Number(value.given) > 0 ? Number(value.given) : 0;
  state.names = Object.keys(curves);
  state.curves = {};
  for (const name of state.names) {
    state.curves[name] = (Array.isArray(curves[name]) ? curves[name] : []).map((p) => [Number(p[0]), Number(p[1])]);
    state.curves[name].sort((a, b) => a[0] - b[0]);
    if (state.curves[name].length < 2) state.curves[name] = PRESETS.constant(state.S);
  }
  if (!state.names.includes(state.selected)) state.selected = state.names.length ? state.names[0] : null;
  state.drag = null;
  state.focus = null;
  lastSent = JSON.stringify(snapshot());
  render();
}

function snapshot() {
  const curves = {};
  for (const name of state.names) curves[name] = state.curves[name].map((p) => [p[0], p[1]]);
  const value = { seconds: state.S, curves };
  if (state.given > 0) value.given = state.given;
  return value;
}

function commit() {
  const value = snapshot();
  const text = JSON.stringify(value);
  if (text === lastSent) return;
  lastSent = text;
  props.value = value;      // gr.HTML fires .change for this
  trigger('input');         // and .input marks it as the user's edit
}

// ---- editing the state (drawing follows) ----
function curve(name) { return state.curves[name]; }

function movePoint(name, i, t, v) {
  const pts = curve(name);
  const last = pts.length - 1;
  let newT = pts[i][0];
  if (i > 0 && i < last) {
    const candidate = roundT(clamp(t, pts[i - 1][0] + MIN_GAP, pts[i + 1][0] - MIN_GAP));
    if (candidate > pts[i - 1][0] && candidate < pts[i + 1][0]) newT = candidate;
  }
  pts[i] = [newT, roundV(clamp(v, 0, 1))];
}

function addPoint(name, t, v) {
  const pts = curve(name);
  const newT = roundT(t);
  const i = pts.findIndex((p) => p[0] >= newT);
  if (i <= 0) return -1;
  if (newT - pts[i - 1][0] < MIN_GAP - 1e-9 || pts[i][0] - newT < MIN_GAP - 1e-9) return -1;
  pts.splice(i, 0, [newT, roundV(clamp(v, 0, 1))]);
  return i;
}

function deletePoint(name, i) {
  const pts = curve(name);
  if (i <= 0 || i >= pts.length - 1) {
    showHint(`The end points stay at 0 s and ${fmtT(state.S)}; drag them up or down.`);
    return false;
  }
  pts.splice(i, 1);
  return true;
}

function applyPreset(kind) {
  const name = state.selected;
  if (!name) return;
  if (kind === 'crossfade') {
    const other = state.partner;
    if (!other || other === name) return;
    state.curves[name] = PRESETS.down(state.S);
    state.curves[other] = PRESETS.up(state.S);
  } else {
    state.curves[name] = PRESETS[kind](state.S);
  }
  state.focus = null;
  commit();
  render();
}

function select(name) {
  if (name === state.selected) return;
  state.selected = name;
  state.focus = null;
  render();
}

function showHint(text) {
  state.hint = text;
  clearTimeout(state.hintTimer);
  state.hintTimer = setTimeout(() => { state.hint = null; renderHelp(); }, 3000);
  renderHelp();
}

// ---- drawing ----
function colourOf(name) { return PALETTE[state.names.indexOf(name) % PALETTE.length]; }

function measure() {
  const W = Math.max(240, Math.round(plot.clientWidth || 600));
  const narrow = W < NARROW_PX;
  const H = narrow ? 190 : 230;
  return { W, H, narrow, x0: 58, x1: W - 18, y0: 14, y1: H - 30 };
}
const xOf = (t) => layout.x0 + (t / state.S) * (layout.x1 - layout.x0);
const yOf = (v) => layout.y1 - v * (layout.y1 - layout.y0);

function timeTicks() {
  const span = layout.x1 - layout.x0;
  const minPx = layout.narrow ? 40 : 64;
  const steps = [0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120];
  const step = steps.find((s) => (s / state.S) * span >= minPx) || state.S;
  const ticks = [];
  for (let k = 0; k * step <= state.S + 1e-9; k++) ticks.push(roundT(k * step));
  // Always label the clip's end; drop the last round tick if their labels would touch (about 44 px).
  if (state.S - ticks[ticks.length - 1] > 1e-9) {
    if (((state.S - ticks[ticks.length - 1]) / state.S) * span < 44) ticks.pop();
    ticks.push(state.S);
  }
  return ticks;
}

function render() {
  layout = measure();
  root.classList.toggle('se-narrow', layout.narrow);
  renderHead();
  renderPlot();
  renderHelp();
}

function renderHead() {
  title.textContent = props.label || '';
  title.hidden = !props.label;
  const focusedChip = legend.contains(document.activeElement) ? document.activeElement.dataset.curve : null;
  legend.replaceChildren();
  for (const name of state.names) {
    const chip = el('button', {
      type: 'button', class: 'se-chip', role: 'radio', 'aria-checked': String(name === state.selected),
      'data-curve': name, title: `Edit the schedule of ${name}`, style: `--se-color: ${colourOf(name)}`,
    }, legend);
    el('span', { class: 'se-swatch', 'aria-hidden': 'true' }, chip);
    el('span', { class: 'se-chip-name', text: name }, chip);
    if (name === focusedChip) chip.focus({ preventScroll: true });
  }
  toolsSwatch.style.setProperty('--se-color', state.selected ? colourOf(state.selected) : 'transparent');
  const others = state.names.filter((n) => n !== state.selected);
  if (!others.includes(state.partner)) {
    const next = state.names[(state.names.indexOf(state.selected) + 1) % Math.max(1, state.names.length)];
    state.partner = others.includes(next) ? next : others[0] || null;
  }
  xfadeSelect.replaceChildren();
  for (const name of others) {
    const option = el('option', { value: name, text: name }, xfadeSelect);
    option.selected = name === state.partner;
  }
  const none = !state.selected;
  tools.hidden = none;
  for (const b of presetButtons) b.disabled = none;
  xfadeButton.disabled = none || others.length === 0;
  xfadeSelect.disabled = xfadeButton.disabled;
  xfade.hidden = others.length === 0;
}

function renderPlot() {
  redrawing = true;
  try { drawPlot(); } finally { redrawing = false; }
}

function drawPlot() {
  const hadFocus = svg.contains(document.activeElement);
  const { W, H, x0, x1, y0, y1 } = layout;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', W);
  svg.setAttribute('height', H);
  Object.assign(svg.dataset, { x0, x1, y0, y1, seconds: state.S });

  // The clickable background reaches a little past the plot so the 0% and 100% lines are easy to hit.
  svgEl('rect', { class: 'se-bg', x: x0 - 8, y: y0 - 8, width: x1 - x0 + 16, height: y1 - y0 + 16, rx: 6 }, svg);
  if (state.given > 0) {   // the audio prompt: heard first, never steered
    const end = Math.min(state.given, state.S);
    const note = state.given > state.S ? ': longer than the clip' : '';
    svgEl('rect', { class: 'se-given', x: x0, y: y0, width: xOf(end) - x0, height: y1 - y0 }, svg);
    svgEl('text', { class: 'se-given-label', x: x0 + 6, y: y0 + 14, text: `prompt ${fmtT(state.given)}${note}` }, svg);
  }
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svgEl('line', { class: 'se-grid', x1: x0, x2: x1, y1: yOf(v), y2: yOf(v) }, svg);
    if (v === 0.25 || v === 0.75) continue;
    svgEl('text', { class: 'se-label', x: x0 - 10, y: yOf(v) + 4, 'text-anchor': 'end', text: fmtV(v) }, svg);
  }
  svgEl('text', { class: 'se-axis-title', transform: `translate(12 ${(y0 + y1) / 2}) rotate(-90)`,
    'text-anchor': 'middle', text: 'strength' }, svg);
  const ticks = timeTicks();
  ticks.forEach((t, k) => {
    svgEl('line', { class: 'se-grid se-grid-t', x1: xOf(t), x2: xOf(t), y1: y0, y2: y1 }, svg);
    const anchor = k === 0 ? 'start' : t === state.S ? 'end' : 'middle';
    svgEl('text', { class: 'se-label se-tick', x: xOf(t), y: H - 10, 'text-anchor': anchor, text: fmtT(t) }, svg);
  });

  if (!state.names.length) {
    const lines = state.error ? [state.error] : ['Turn on a control', 'to draw its schedule.'];
    const text = svgEl('text', {
      class: 'se-empty', x: (x0 + x1) / 2, y: (y0 + y1) / 2 - 4, 'text-anchor': 'middle',
    }, svg);
    lines.forEach((line, k) => svgEl('tspan', { x: (x0 + x1) / 2, dy: k ? '1.3em' : 0, text: line }, text));
    return;
  }
  // Other curves first (faint, dashed), the selected one last so its points are on top.
  const order = state.names.filter((n) => n !== state.selected).concat(state.selected ? [state.selected] : []);
  for (const name of order) drawCurve(name, name === state.selected);
  drawTooltip(hadFocus);

  if (hadFocus && state.focus !== null) {
    const target = svg.querySelector(`.se-pt-sel[data-i="${state.focus}"]`);
    if (target) target.focus({ preventScroll: true });
  }
}

function drawCurve(name, selected) {
  const pts = curve(name);
  const colour = colourOf(name);
  const g = svgEl('g', { class: selected ? 'se-selected' : 'se-other', style: `--se-color: ${colour}` }, svg);
  const xy = (t, v) => `${xOf(t).toFixed(1)},${yOf(v).toFixed(1)}`;
  const line = pts.map((p) => xy(p[0], p[1])).join(' ');
  if (selected) {
    const area = `M${xy(0, 0)} L${pts.map((p) => xy(p[0], p[1])).join(' L')} L${xy(state.S, 0)} Z`;
    svgEl('path', { class: 'se-area', d: area }, g);
  }
  svgEl('polyline', { class: 'se-line', points: line }, g);
  pts.forEach((p, i) => {
    const end = i === 0 || i === pts.length - 1;
    const classes = ['se-pt', selected ? 'se-pt-sel' : 'se-pt-other', end ? 'se-pt-end' : ''].join(' ').trim();
    const where = i === 0 ? 'start' : i === pts.length - 1 ? 'end' : `point ${i + 1}`;
    const point = svgEl('g', {
      class: classes, 'data-curve': name, 'data-i': i, tabindex: selected ? 0 : -1,
      role: 'slider', 'aria-label': `${name}, ${where}`, 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-valuenow': Math.round(p[1] * 100), 'aria-valuetext': `${fmtT(p[0])}, ${fmtV(p[1])}`,
      transform: `translate(${xOf(p[0]).toFixed(1)} ${yOf(p[1]).toFixed(1)})`,
    }, g);
    svgEl('circle', { class: 'se-hit', r: HIT_RADIUS }, point);
    svgEl('circle', { class: 'se-ring', r: selected ? 10 : 0 }, point);
    svgEl('circle', { class: 'se-dot', r: selected ? (end ? 5.5 : 6) : 3.5 }, point);
  });
}

function drawTooltip(focused) {
  const active = state.drag ? state.drag.i : focused ? state.focus : null;
  if (active === null || !state.selected) return;
  const p = curve(state.selected)[active];
  if (!p) return;
  const text = `${fmtT(p[0])} \u00b7 ${fmtV(p[1])}`;
  const w = 8 + text.length * 6.6;
  const x = clamp(xOf(p[0]) - w / 2, 2, layout.W - w - 2);
  const y = yOf(p[1]) > layout.y0 + 34 ? yOf(p[1]) - 34 : yOf(p[1]) + 14;
  const g = svgEl('g', { class: 'se-tip', transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})` }, svg);
  svgEl('rect', { width: w, height: 20, rx: 4 }, g);
  svgEl('text', { x: w / 2, y: 14, 'text-anchor': 'middle', text }, g);
}

function renderHelp() {
  let text = '';
  if (state.hint) text = state.hint;
  else if (!state.names.length) text = '';
  else if (layout && layout.narrow) text = 'Tap to add a point \u00b7 drag to move \u00b7 double-tap to delete.';
  else text = 'Click to add a point \u00b7 drag to move \u00b7 double-click to delete \u00b7 '
    + 'focused point: arrows move (Shift: faster), Delete removes, + adds one after it.';
  if (help.textContent !== text) help.textContent = text;   // unchanged text is not re-announced
}

// ---- pointer: mouse, pen and touch alike ----
function eventPos(ev) {
  const r = svg.getBoundingClientRect();
  const x = ((ev.clientX - r.left) * layout.W) / r.width;
  const y = ((ev.clientY - r.top) * layout.H) / r.height;
  return {
    t: clamp((x - layout.x0) / (layout.x1 - layout.x0), 0, 1) * state.S,
    v: clamp((layout.y1 - y) / (layout.y1 - layout.y0), 0, 1),
  };
}

function startDrag(name, i, ev) {
  state.drag = { name, i, pointerId: ev.pointerId, before: JSON.stringify(curve(name)), moved: false };
  state.focus = i;
  svg.setPointerCapture(ev.pointerId);
  render();
  const target = svg.querySelector(`.se-pt-sel[data-i="${i}"]`);
  if (target) target.focus({ preventScroll: true });
}

svg.addEventListener('pointerdown', (ev) => {
  if (ev.pointerType === 'mouse' && ev.button !== 0) return;
  if (!state.selected || state.drag) return;
  ev.preventDefault();
  const hit = ev.target.closest('.se-pt');
  const now = performance.now();
  if (hit) {
    const name = hit.dataset.curve;
    const i = Number(hit.dataset.i);
    const tap = state.lastTap;
    if (tap && tap.name === name && tap.i === i && now - tap.time < DOUBLE_TAP_MS) {
      state.lastTap = null;
      if (deletePoint(name, i)) {
        state.focus = Math.max(0, i - 1);
        commit();
      }
      render();
      return;
    }
    state.lastTap = { name, i, time: now };
    if (name !== state.selected) { state.selected = name; }
    startDrag(name, i, ev);
    return;
  }
  if (!ev.target.closest('.se-bg')) return;
  state.lastTap = null;
  const pos = eventPos(ev);
  const i = addPoint(state.selected, pos.t, pos.v);
  if (i < 0) { showHint('Too close to an existing point; drag that one instead.'); return; }
  commit();
  startDrag(state.selected, i, ev);   // keep the button down to place it precisely
});

svg.addEventListener('pointermove', (ev) => {
  const drag = state.drag;
  if (!drag || ev.pointerId !== drag.pointerId) return;
  const pos = eventPos(ev);
  movePoint(drag.name, drag.i, pos.t, pos.v);
  drag.moved = true;
  renderPlot();
});

function endDrag(ev, keep) {
  const drag = state.drag;
  if (!drag || ev.pointerId !== drag.pointerId) return;
  state.drag = null;
  if (svg.hasPointerCapture(ev.pointerId)) svg.releasePointerCapture(ev.pointerId);
  if (!keep) state.curves[drag.name] = JSON.parse(drag.before);
  if (drag.moved) state.lastTap = null;   // a drag is not the first half of a double-click
  commit();
  render();
}
svg.addEventListener('pointerup', (ev) => endDrag(ev, true));
svg.addEventListener('pointercancel', (ev) => endDrag(ev, false));

// ---- keyboard: Tab between points, arrows move, Delete removes, + adds ----
svg.addEventListener('keydown', (ev) => {
  const hit = ev.target.closest && ev.target.closest('.se-pt-sel');
  if (!hit || state.drag) return;
  const name = state.selected;
  const pts = curve(name);
  const i = Number(hit.dataset.i);
  const big = ev.shiftKey ? KEY_BIG : 1;
  const [t, v] = pts[i];
  let handled = true;
  switch (ev.key) {
    case 'ArrowLeft': movePoint(name, i, t - KEY_STEP_T * big, v); state.keyDirty = true; break;
    case 'ArrowRight': movePoint(name, i, t + KEY_STEP_T * big, v); state.keyDirty = true; break;
    case 'ArrowUp': movePoint(name, i, t, v + KEY_STEP_V * big); state.keyDirty = true; break;
    case 'ArrowDown': movePoint(name, i, t, v - KEY_STEP_V * big); state.keyDirty = true; break;
    case 'PageUp': movePoint(name, i, t, v + 0.1); state.keyDirty = true; break;
    case 'PageDown': movePoint(name, i, t, v - 0.1); state.keyDirty = true; break;
    case 'Delete': case 'Backspace':
      if (deletePoint(name, i)) { state.focus = i - 1; commit(); }
      break;
    case '+': case '=': case 'Insert': {
      const j = i < pts.length - 1 ? i : i - 1;
      const mid = [(pts[j][0] + pts[j + 1][0]) / 2, (pts[j][1] + pts[j + 1][1]) / 2];
      const k = addPoint(name, mid[0], mid[1]);
      if (k < 0) showHint('No room for another point here.');
      else { state.focus = k; commit(); }
      break;
    }
    default: handled = false;
  }
  if (!handled) return;
  ev.preventDefault();
  if (state.focus === null || state.focus >= curve(name).length) state.focus = i;
  render();
});
// Held arrow keys repeat keydown; the value goes to Python once, when the key is released.
svg.addEventListener('keyup', () => { if (state.keyDirty) { state.keyDirty = false; commit(); } });
svg.addEventListener('focusin', (ev) => {
  if (redrawing) return;
  const hit = ev.target.closest && ev.target.closest('.se-pt-sel');
  if (!hit || state.drag) return;
  const i = Number(hit.dataset.i);
  if (state.focus !== i) { state.focus = i; render(); }
  else { svg.querySelectorAll('.se-tip').forEach((n) => n.remove()); drawTooltip(true); }
});
svg.addEventListener('focusout', (ev) => {
  if (redrawing) return;
  if (state.keyDirty) { state.keyDirty = false; commit(); }
  if (!svg.contains(ev.relatedTarget)) svg.querySelectorAll('.se-tip').forEach((n) => n.remove());
});

// ---- chips and presets ----
legend.addEventListener('click', (ev) => {
  const chip = ev.target.closest('.se-chip');
  if (chip) select(chip.dataset.curve);
});
tools.addEventListener('click', (ev) => {
  const button = ev.target.closest('button[data-preset]');
  if (button && !button.disabled) applyPreset(button.dataset.preset);
});
xfadeSelect.addEventListener('change', () => { state.partner = xfadeSelect.value; });

// ---- follow Python and the page ----
watch('value', () => {
  const incoming = typeof props.value === 'string' ? props.value : JSON.stringify(props.value);
  if (incoming !== lastSent) load(props.value);
});
watch('label', () => renderHead());
new ResizeObserver(() => {
  if (!state.drag && layout && Math.max(240, Math.round(plot.clientWidth || 600)) !== layout.W) render();
}).observe(plot);
load(props.value);
