// Worldloom viewer: no framework, no build step, talks only to this server.
'use strict';

const $ = (s) => document.querySelector(s);
const CHUNK = 32;
const TILE = 128; // overview samples per tile side
// Columns per screen pixel; chunks are drawn at 1 and below, the core-only overview above.
const SCALES = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64];
const CHUNK_MODE_MAX = 1;
const MAX_RADIUS = 32;
const HOOKS = ['terrain', 'biome', 'features'];
const KINDS = ['exception', 'timeout', 'fuel_exhausted', 'memory_limit', 'output_limit', 'invalid_output', 'trap', 'missing_hook', 'syntax'];
const MARKERS = { tree: [10, 50, 12], bush: [60, 90, 30], rock: [70, 70, 70], cactus: [30, 110, 40], flower: [220, 40, 120], reed: [120, 110, 50] };

const state = {
  token: localStorage.getItem('worldloom.token') || '',
  biomes: [], rgb: [], params: [],
  world: null, revision: 0,
  vx: 16, vz: 16, scaleIndex: 3,
  chunks: new Map(), // "cx,cz" -> {rec, canvas, revision}
  tiles: new Map(),  // "rev:step:tx:tz" -> {canvas, tile} or {pending: true}
  tileQueue: [], tileInflight: 0,
  ws: null, sub: null, done: null,
  progress: { have: 0, total: 0, done: false, mode: 'none' },
  pinned: null, dirty: false,
};
window.viewer = state; // for tests and the console
window.viewerApi = {
  toScreen: (wx, wz) => toScreen(wx, wz),
  toWorld: (px, py) => toWorld(px, py),
  pixels: (x, y, w, h) => Array.from(ctx.getImageData(x, y, w, h).data),
  size: () => [canvas.width, canvas.height],
  scale: () => scale(),
};

function status(text) { $('#status').textContent = text || ''; }

async function api(method, path, body) {
  const headers = { 'accept': 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && state.token) headers['authorization'] = 'Bearer ' + state.token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!res.ok) {
    const e = new Error(json && json.message ? json.message : `${res.status} ${text}`);
    e.status = res.status; e.body = json;
    throw e;
  }
  return json !== null ? json : text;
}

function hexRgb(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

// ---- postcard decoding of chunk envelopes (b"WL", kind 2, version 2) ----
class Reader {
  constructor(buf) { this.b = new Uint8Array(buf); this.dv = new DataView(buf); this.o = 0; }
  u8() { if (this.o >= this.b.length) throw new Error('truncated chunk'); return this.b[this.o++]; }
  varint() { let r = 0, m = 1; for (;;) { const x = this.u8(); r += (x & 0x7f) * m; if (!(x & 0x80)) return r; m *= 128; } }
  varbig() { let r = 0n, s = 0n; for (;;) { const x = BigInt(this.u8()); r |= (x & 0x7fn) << s; if (!(x & 0x80n)) return r; s += 7n; } }
  zz() { const n = this.varint(); return n % 2 ? -(n + 1) / 2 : n / 2; }
  zzbig() { const n = this.varbig(); return Number((n >> 1n) ^ -(n & 1n)); }
  f32() { const v = this.dv.getFloat32(this.o, true); this.o += 4; return v; }
  f64() { const v = this.dv.getFloat64(this.o, true); this.o += 8; return v; }
  str() { const n = this.varint(); const s = new TextDecoder().decode(this.b.subarray(this.o, this.o + n)); this.o += n; return s; }
  f32s() { const n = this.varint(); const out = new Float32Array(n); for (let i = 0; i < n; i++) out[i] = this.f32(); return out; }
}

function decodeChunk(buf) {
  const r = new Reader(buf);
  if (r.u8() !== 0x57 || r.u8() !== 0x4c) throw new Error('not a Worldloom envelope');
  const kind = r.u8(), version = r.u8();
  if (kind !== 2 || version !== 2) throw new Error(`unsupported envelope kind ${kind} version ${version}`);
  const rec = { world: r.str(), revision: r.varint(), cx: r.zz(), cz: r.zz() };
  rec.height = r.f32s(); rec.temperature = r.f32s(); rec.moisture = r.f32s();
  const nb = r.varint(); rec.biome = new Uint16Array(nb); for (let i = 0; i < nb; i++) rec.biome[i] = r.varint();
  rec.features = [];
  for (let n = r.varint(); n > 0; n--) {
    const f = { x: r.u8(), z: r.u8(), kind: r.str(), properties: {} };
    for (let m = r.varint(); m > 0; m--) {
      const key = r.str(); const tag = r.varint();
      f.properties[key] = tag === 0 ? r.u8() !== 0 : tag === 1 ? r.zzbig() : tag === 2 ? r.f64() : r.str();
    }
    rec.features.push(f);
  }
  rec.plugin_failures = [];
  for (let n = r.varint(); n > 0; n--) {
    rec.plugin_failures.push({ plugin: r.str(), version: r.str(), hook: HOOKS[r.varint()], kind: KINDS[r.varint()], message: r.str(), transient: r.u8() !== 0 });
  }
  return rec;
}

// ---- rendering ----
// Shaded relief: light from the north-west; `d` is the spacing of samples in columns.
// The slope is a central difference inside the image and a one-sided one on
// its edges (over the one neighbour there is, with that spacing), so an edge
// column is as steep as its neighbours and chunk borders show no seam.
function shade(h, i, j, n, d, idx) {
  const i0 = Math.max(0, i - 1), i1 = Math.min(n - 1, i + 1);
  const j0 = Math.max(0, j - 1), j1 = Math.min(n - 1, j + 1);
  const dx = (h[idx(i1, j)] - h[idx(i0, j)]) / ((i1 - i0) * d);
  const dz = (h[idx(i, j1)] - h[idx(i, j0)]) / ((j1 - j0) * d);
  const s = 1 + 0.9 * (-dx - dz) / Math.sqrt(1 + dx * dx + dz * dz);
  return Math.min(1.4, Math.max(0.5, s));
}

function paint(h, biome, n, d) {
  const canvas = document.createElement('canvas');
  canvas.width = n; canvas.height = n;
  const g = canvas.getContext('2d');
  const img = g.createImageData(n, n);
  const idx = (i, j) => i * n + j; // [x][z]
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const b = biome[idx(i, j)];
      const c = state.rgb[b] || [255, 0, 255];
      const s = b <= 1 ? 1 : shade(h, i, j, n, d, idx);
      const p = (j * n + i) * 4; // screen x = world x, screen y = world z
      img.data[p] = Math.min(255, c[0] * s); img.data[p + 1] = Math.min(255, c[1] * s);
      img.data[p + 2] = Math.min(255, c[2] * s); img.data[p + 3] = 255;
    }
  }
  return { canvas, g, img };
}

function chunkCanvas(rec) {
  const { canvas, g, img } = paint(rec.height, rec.biome, CHUNK, 1);
  for (const f of rec.features) {
    const c = MARKERS[f.kind] || [20, 20, 20];
    const p = (f.z * CHUNK + f.x) * 4;
    img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2];
  }
  g.putImageData(img, 0, 0);
  return canvas;
}

const canvas = $('#map');
const ctx = canvas.getContext('2d');
const scale = () => SCALES[state.scaleIndex];
const chunkMode = () => scale() <= CHUNK_MODE_MAX;

function toScreen(wx, wz) {
  return [(wx - state.vx) / scale() + canvas.width / 2, (wz - state.vz) / scale() + canvas.height / 2];
}
function toWorld(px, py) {
  return [Math.floor(state.vx + (px - canvas.width / 2) * scale()), Math.floor(state.vz + (py - canvas.height / 2) * scale())];
}
function viewBounds() {
  const s = scale(), hw = canvas.width / 2 * s, hh = canvas.height / 2 * s;
  return { x0: state.vx - hw, x1: state.vx + hw, z0: state.vz - hh, z1: state.vz + hh };
}

function draw() {
  state.dirty = false;
  resize();
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#0b0d10';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const s = scale(), b = viewBounds();
  if (!state.world) return;
  if (chunkMode()) {
    const size = CHUNK / s;
    for (let cx = Math.floor(b.x0 / CHUNK); cx <= Math.floor(b.x1 / CHUNK); cx++) {
      for (let cz = Math.floor(b.z0 / CHUNK); cz <= Math.floor(b.z1 / CHUNK); cz++) {
        const c = state.chunks.get(cx + ',' + cz);
        if (!c) continue;
        const [px, py] = toScreen(cx * CHUNK, cz * CHUNK);
        ctx.drawImage(c.canvas, Math.round(px), Math.round(py), Math.ceil(size), Math.ceil(size));
      }
    }
  } else {
    const step = tileStep(), span = TILE * step;
    for (const t of tilesInView()) {
      const got = state.tiles.get(tileKey(step, t.tx, t.tz));
      if (!got || !got.canvas) continue;
      const [px, py] = toScreen(t.tx * span, t.tz * span);
      ctx.drawImage(got.canvas, Math.round(px), Math.round(py), Math.ceil(span / s), Math.ceil(span / s));
    }
  }
}
// An even canvas size, so the view's centre is on a pixel boundary.
function resize() {
  const w = canvas.clientWidth & ~1, h = canvas.clientHeight & ~1;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
}
function redraw() { if (!state.dirty) { state.dirty = true; requestAnimationFrame(draw); } }

// ---- chunks over the WebSocket ----
function connect() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  state.sub = null;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/v1/worlds/${state.world.id}/stream`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => subscribe();
  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') {
      try {
        const rec = decodeChunk(ev.data);
        if (rec.revision < state.revision) return;
        state.chunks.set(rec.cx + ',' + rec.cz, { rec, canvas: chunkCanvas(rec), revision: rec.revision });
        updateProgress(); redraw(); refreshInfo();
      } catch (e) { status('bad chunk frame: ' + e.message); }
      return;
    }
    const msg = JSON.parse(ev.data);
    if (msg.done) {
      if (state.sub && msg.done.center[0] === state.sub.center[0] && msg.done.center[1] === state.sub.center[1] && msg.done.radius === state.sub.radius) {
        state.done = msg.done; updateProgress();
      }
    } else if (msg.revision) {
      state.revision = msg.revision.revision;
      state.done = null;
      for (const [k, c] of state.chunks) if (c.revision < state.revision) c.stale = true;
      state.tiles.clear();
      reloadWorld();
      updateProgress(); redraw();
    } else if (msg.error) {
      status((msg.chunk ? `chunk ${msg.chunk}: ` : '') + msg.error.message);
    }
  };
  ws.onclose = () => { if (state.ws === ws) setTimeout(() => { if (state.ws === ws && state.world) connect(); }, 1000); };
  state.ws = ws;
}

function subscribe() {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !chunkMode()) return;
  const s = scale();
  const center = [Math.floor(state.vx / CHUNK), Math.floor(state.vz / CHUNK)];
  const half = Math.max(canvas.width, canvas.height) / 2 * s / CHUNK;
  const radius = Math.min(MAX_RADIUS, Math.ceil(half) + 1);
  const sub = { center, radius };
  if (state.sub && state.sub.center[0] === center[0] && state.sub.center[1] === center[1] && state.sub.radius === radius) return;
  state.sub = sub; state.done = null;
  state.ws.send(JSON.stringify(sub));
  updateProgress();
}

function updateProgress() {
  const p = state.progress;
  if (!state.world) { $('#progress').textContent = ''; return; }
  if (chunkMode()) {
    p.mode = 'chunks';
    const sub = state.sub;
    if (!sub) { p.have = 0; p.total = 0; p.done = false; } else {
      let have = 0;
      for (let dx = -sub.radius; dx <= sub.radius; dx++) for (let dz = -sub.radius; dz <= sub.radius; dz++) {
        const c = state.chunks.get((sub.center[0] + dx) + ',' + (sub.center[1] + dz));
        if (c && c.revision === state.revision) have++;
      }
      p.total = (2 * sub.radius + 1) ** 2; p.have = have;
      p.done = !!state.done && state.done.revision === state.revision && have === p.total;
    }
    $('#progress').textContent = `${p.have}/${p.total} chunks` + (p.done ? ' \u2713' : ' \u2026');
    $('#mode').textContent = `world with its plugins, revision ${state.revision}`;
    $('#mode').className = '';
  } else {
    p.mode = 'overview';
    const want = tilesInView(), step = tileStep();
    p.total = want.length;
    p.have = want.filter((t) => (state.tiles.get(tileKey(step, t.tx, t.tz)) || {}).canvas).length;
    p.done = p.have === p.total;
    $('#progress').textContent = `${p.have}/${p.total} overview tiles` + (p.done ? ' \u2713' : ' \u2026');
    $('#mode').textContent = 'core-only overview (plugins not applied)';
    $('#mode').className = 'overview';
  }
  $('#progress').dataset.done = String(p.done);
  $('#scale').textContent = scale() >= 1 ? `1:${scale()}` : `${1 / scale()}:1`;
}

// ---- the core-only overview ----
const tileStep = () => Math.min(64, Math.max(1, scale()));
const tileKey = (step, tx, tz) => `${state.revision}:${step}:${tx}:${tz}`;
function tilesInView() {
  const span = TILE * tileStep(), b = viewBounds(), out = [];
  for (let tx = Math.floor(b.x0 / span); tx <= Math.floor(b.x1 / span); tx++)
    for (let tz = Math.floor(b.z0 / span); tz <= Math.floor(b.z1 / span); tz++) out.push({ tx, tz });
  const c = [state.vx / span, state.vz / span];
  out.sort((a, b2) => ((a.tx + 0.5 - c[0]) ** 2 + (a.tz + 0.5 - c[1]) ** 2) - ((b2.tx + 0.5 - c[0]) ** 2 + (b2.tz + 0.5 - c[1]) ** 2));
  return out;
}
function requestTiles() {
  if (!state.world || chunkMode()) return;
  const step = tileStep();
  state.tileQueue = tilesInView().filter((t) => !state.tiles.has(tileKey(step, t.tx, t.tz))).map((t) => ({ ...t, step }));
  pumpTiles();
  updateProgress();
}
function pumpTiles() {
  while (state.tileInflight < 4 && state.tileQueue.length) {
    const t = state.tileQueue.shift(), key = tileKey(t.step, t.tx, t.tz), world = state.world.id;
    if (state.tiles.has(key)) continue;
    state.tiles.set(key, { pending: true });
    state.tileInflight++;
    const span = TILE * t.step;
    fetch(`/v1/worlds/${world}/overview?x=${t.tx * span}&z=${t.tz * span}&step=${t.step}&size=${TILE}`, { headers: { accept: 'application/octet-stream' } })
      .then(async (res) => {
        if (!res.ok) throw new Error((await res.json()).message);
        const tile = decodeTile(await res.arrayBuffer());
        const { canvas: c, g, img } = paint(tile.height, tile.biome, tile.size, tile.step);
        g.putImageData(img, 0, 0);
        if (state.world && state.world.id === world) state.tiles.set(key, { canvas: c, tile });
      })
      .catch((e) => { state.tiles.delete(key); status('overview: ' + e.message); })
      .finally(() => { state.tileInflight--; pumpTiles(); updateProgress(); redraw(); refreshInfo(); });
  }
}
// The binary overview: 32-byte little-endian header, then size² f32 heights and size² u8 biomes.
function decodeTile(buf) {
  const dv = new DataView(buf);
  if (String.fromCharCode(...new Uint8Array(buf, 0, 4)) !== 'WLOV' || dv.getUint32(4, true) !== 1) throw new Error('not an overview tile');
  const t = { x: dv.getInt32(8, true), z: dv.getInt32(12, true), step: dv.getUint32(16, true), size: dv.getUint32(20, true), revision: dv.getUint32(24, true) };
  const n = t.size * t.size;
  t.height = new Float32Array(buf.slice(32, 32 + 4 * n));
  t.biome = new Uint8Array(buf, 32 + 4 * n, n);
  return t;
}

// ---- view changes ----
function viewChanged() {
  // Whole screen pixels: a column's pixels start exactly where its chunk is drawn.
  state.vx = Math.round(state.vx / scale()) * scale(); state.vz = Math.round(state.vz / scale()) * scale();
  resize(); updateProgress(); redraw(); subscribe(); requestTiles();
}
function zoom(delta, px, py) {
  const i = Math.min(SCALES.length - 1, Math.max(0, state.scaleIndex + delta));
  if (i === state.scaleIndex) return;
  if (px !== undefined) {
    const [wx, wz] = [state.vx + (px - canvas.width / 2) * scale(), state.vz + (py - canvas.height / 2) * scale()];
    state.scaleIndex = i;
    state.vx = wx - (px - canvas.width / 2) * scale(); state.vz = wz - (py - canvas.height / 2) * scale();
  } else state.scaleIndex = i;
  viewChanged();
}
function pan(dxPx, dyPx) { state.vx -= dxPx * scale(); state.vz -= dyPx * scale(); viewChanged(); }

let drag = null;
canvas.addEventListener('pointerdown', (e) => { drag = { x: e.clientX, y: e.clientY }; canvas.setPointerCapture(e.pointerId); canvas.focus(); });
canvas.addEventListener('pointermove', (e) => {
  if (drag) { pan(e.clientX - drag.x, e.clientY - drag.y); drag = { x: e.clientX, y: e.clientY }; }
  const r = canvas.getBoundingClientRect();
  if (!state.pinned) showInfo(...toWorld(e.clientX - r.left, e.clientY - r.top));
});
canvas.addEventListener('pointerup', (e) => { drag = null; canvas.releasePointerCapture(e.pointerId); });
canvas.addEventListener('click', (e) => {
  const r = canvas.getBoundingClientRect();
  const at = toWorld(e.clientX - r.left, e.clientY - r.top);
  state.pinned = e.shiftKey ? at : null;
  showInfo(...at);
});
canvas.addEventListener('wheel', (e) => { e.preventDefault(); const r = canvas.getBoundingClientRect(); zoom(e.deltaY > 0 ? 1 : -1, e.clientX - r.left, e.clientY - r.top); }, { passive: false });
window.addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
  const step = Math.max(canvas.width, canvas.height) / 8;
  const keys = { ArrowLeft: [step, 0], a: [step, 0], ArrowRight: [-step, 0], d: [-step, 0], ArrowUp: [0, step], w: [0, step], ArrowDown: [0, -step], s: [0, -step] };
  if (keys[e.key]) { e.preventDefault(); pan(...keys[e.key]); } else if (e.key === '+' || e.key === '=') zoom(-1); else if (e.key === '-') zoom(1);
});
$('#zoom-in').addEventListener('click', () => zoom(-1));
$('#zoom-out').addEventListener('click', () => zoom(1));
window.addEventListener('resize', () => viewChanged());

// ---- hover / click: what is at a column ----
function fmt(v, digits) { return typeof v === 'number' ? v.toFixed(digits) : String(v); }
function showInfo(wx, wz) {
  state.hover = [wx, wz];
  const set = (id, text, raw) => { const e = $('#info-' + id); e.textContent = text; e.dataset.value = raw === undefined ? '' : String(raw); };
  set('column', `x ${wx}, z ${wz} (chunk ${Math.floor(wx / CHUNK)}, ${Math.floor(wz / CHUNK)})`, `${wx},${wz}`);
  const cx = Math.floor(wx / CHUNK), cz = Math.floor(wz / CHUNK);
  const c = chunkMode() ? state.chunks.get(cx + ',' + cz) : null;
  if (c) {
    const i = (wx - cx * CHUNK) * CHUNK + (wz - cz * CHUNK), r = c.rec;
    const b = state.biomes[r.biome[i]] || { name: '?' };
    set('height', fmt(r.height[i], 1) + ' m', r.height[i]);
    set('temperature', fmt(r.temperature[i], 1) + ' \u00b0C', r.temperature[i]);
    set('moisture', fmt(r.moisture[i], 3), r.moisture[i]);
    set('biome', `${b.name} (${r.biome[i]})`, r.biome[i]);
    const here = r.features.filter((f) => f.x === wx - cx * CHUNK && f.z === wz - cz * CHUNK);
    set('features', here.length ? here.map((f) => `${f.kind} ${JSON.stringify(f.properties)}`).join('; ') : 'none', here.length);
    set('failures', r.plugin_failures.length ? r.plugin_failures.map((f) => `${f.plugin}@${f.version} ${f.hook}: ${f.kind}: ${f.message}`).join('\n') : 'none', r.plugin_failures.length);
    return;
  }
  const step = tileStep(), span = TILE * step;
  const t = !chunkMode() && state.tiles.get(tileKey(step, Math.floor(wx / span), Math.floor(wz / span)));
  if (t && t.tile) {
    const i = Math.floor((wx - t.tile.x) / step) * t.tile.size + Math.floor((wz - t.tile.z) / step);
    const b = state.biomes[t.tile.biome[i]] || { name: '?' };
    set('height', fmt(t.tile.height[i], 1) + ' m (core overview sample)', t.tile.height[i]);
    set('biome', `${b.name} (${t.tile.biome[i]}), core only`, t.tile.biome[i]);
    for (const id of ['temperature', 'moisture', 'features', 'failures']) set(id, 'zoom in for chunk data');
    return;
  }
  for (const id of ['height', 'temperature', 'moisture', 'biome', 'features', 'failures']) set(id, '-');
}
function refreshInfo() { if (state.hover) showInfo(...state.hover); }

// ---- worlds ----
async function loadWorlds() {
  const { worlds } = await api('GET', '/v1/worlds');
  const ul = $('#worlds'); ul.replaceChildren();
  for (const w of worlds) {
    const li = el('li', { 'data-id': w.id, text: `${w.name} \u2014 seed ${w.seed}, r${w.revision}${w.owner ? ', ' + w.owner : ''}`, onclick: () => selectWorld(w.id) });
    if (state.world && state.world.id === w.id) li.className = 'selected';
    ul.append(li);
  }
  return worlds;
}

async function selectWorld(id) {
  const w = await api('GET', `/v1/worlds/${id}`);
  state.world = w; state.revision = w.revision;
  state.chunks.clear(); state.tiles.clear(); state.done = null; state.hover = null;
  history.replaceState(null, '', '#world=' + id);
  showWorld(w);
  for (const li of document.querySelectorAll('#worlds li')) li.classList.toggle('selected', li.dataset.id === id);
  connect();
  viewChanged();
}
async function reloadWorld() {
  if (!state.world) return;
  state.world = await api('GET', `/v1/worlds/${state.world.id}`);
  showWorld(state.world);
}
function showWorld(w) {
  $('#world-section').hidden = false;
  $('#world-title').textContent = w.name;
  $('#world-meta').textContent = `id ${w.id} \u00b7 seed ${w.seed} \u00b7 revision ${w.revision} \u00b7 owner ${w.owner || '-'}`;
  const ul = $('#world-plugins'); ul.replaceChildren();
  if (!w.plugins.length) ul.append(el('li', { text: 'no plugins attached' }));
  for (const p of w.plugins) {
    ul.append(el('li', { text: `${p.name}@${p.version} ${JSON.stringify(p.params)} ` },
      el('button', { text: 'detach', onclick: () => setPlugins(w.plugins.filter((q) => q.name !== p.name).map(plain)) })));
  }
}
const plain = (p) => ({ name: p.name, version: p.version, params: p.params });

async function setPlugins(plugins) {
  $('#attach-error').textContent = '';
  try {
    const w = await api('PUT', `/v1/worlds/${state.world.id}/plugins`, { plugins });
    state.world = w; showWorld(w);
    status(`world is at revision ${w.revision}; redrawing`);
  } catch (e) { $('#attach-error').textContent = e.message; }
}

function buildCreateForm() {
  const fs = $('#param-fields');
  for (const p of state.params) {
    const input = el('input', { name: p.name, type: 'number', min: p.min, max: p.max, step: p.integer ? 1 : 'any', placeholder: String(p.default) });
    fs.append(el('label', { class: 'param' }, `${p.name} `, input,
      el('small', { text: `default ${p.default}, ${p.min}..${p.max}${p.unit ? ' ' + p.unit : ''}${p.integer ? ' (integer)' : ''}: ${p.doc}` })));
  }
  $('#create-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target, body = { name: f.name.value, params: {} };
    if (f.seed.value.trim()) body.seed = /^\d+$/.test(f.seed.value.trim()) && Number.isSafeInteger(Number(f.seed.value)) ? Number(f.seed.value) : f.seed.value;
    for (const p of state.params) if (f[p.name].value !== '') body.params[p.name] = Number(f[p.name].value);
    $('#create-error').textContent = '';
    try {
      const w = await api('POST', '/v1/worlds', body);
      await loadWorlds();
      await selectWorld(w.id);
      status(`created ${w.name}`);
    } catch (err) { $('#create-error').textContent = err.message + (err.status === 401 ? ' (paste a token above)' : ''); }
  });
}

// ---- workshop ----
async function searchPlugins() {
  const q = $('#plugin-search').value;
  const { plugins } = await api('GET', `/v1/plugins?q=${encodeURIComponent(q)}&limit=50`);
  const ul = $('#plugins'); ul.replaceChildren();
  for (const p of plugins) {
    ul.append(el('li', { 'data-name': p.name, text: `${p.name} ${p.latest_version || ''} \u2014 ${p.description || ''}`, onclick: () => showPlugin(p.name) }));
  }
}
async function showPlugin(name, version) {
  const entry = await api('GET', `/v1/plugins/${encodeURIComponent(name)}`);
  version = version || entry.latest_version;
  const v = await api('GET', `/v1/plugins/${encodeURIComponent(name)}/${encodeURIComponent(version)}`);
  const source = await api('GET', v.source_url || `/v1/plugins/${name}/${version}/source`);
  $('#plugin-detail').hidden = false;
  $('#plugin-title').textContent = `${v.name}@${v.version}${v.yanked ? ' (yanked)' : ''} by ${v.owner}`;
  $('#plugin-description').textContent = v.description;
  $('#plugin-hooks').textContent = v.hooks.join(', ') || 'none';
  $('#plugin-source').textContent = source;
  const tbody = $('#plugin-params tbody'); tbody.replaceChildren();
  const fields = $('#attach-fields'); fields.replaceChildren();
  for (const [pname, d] of Object.entries(v.params)) {
    const range = d.min !== null && d.min !== undefined || d.max !== null && d.max !== undefined ? `${d.min ?? ''}..${d.max ?? ''}` : '';
    tbody.append(el('tr', {}, el('td', { text: pname }), el('td', { text: JSON.stringify(d.default) }), el('td', { text: range }), el('td', { text: d.doc })));
    const attrs = { name: pname, 'data-kind': typeof d.default };
    if (typeof d.default === 'number') Object.assign(attrs, { type: 'number', step: 'any', value: d.default }, d.min != null ? { min: d.min } : {}, d.max != null ? { max: d.max } : {});
    else if (typeof d.default === 'boolean') Object.assign(attrs, { type: 'checkbox' }, d.default ? { checked: '' } : {});
    else Object.assign(attrs, { value: d.default });
    fields.append(el('label', {}, `${pname} `, el('input', attrs), el('small', { class: 'doc', text: d.doc })));
  }
  state.plugin = v;
}
$('#attach-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (!state.world || !state.plugin) { $('#attach-error').textContent = 'select a world first'; return; }
  const params = {};
  for (const input of $('#attach-fields').querySelectorAll('input')) {
    const kind = input.dataset.kind;
    params[input.name] = kind === 'number' ? Number(input.value) : kind === 'boolean' ? input.checked : input.value;
  }
  const others = state.world.plugins.filter((p) => p.name !== state.plugin.name).map(plain);
  setPlugins([...others, { name: state.plugin.name, version: state.plugin.version, params }]);
});
let searchTimer = null;
$('#plugin-search').addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(searchPlugins, 200); });

// ---- token ----
function showToken() { $('#token-state').textContent = state.token ? 'token saved' : 'no token: read-only'; }
$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.token = $('#token').value.trim();
  if (state.token) localStorage.setItem('worldloom.token', state.token); else localStorage.removeItem('worldloom.token');
  $('#token').value = '';
  showToken();
});

// ---- start ----
async function start() {
  showToken();
  const [{ biomes }, { params }] = await Promise.all([api('GET', '/v1/biomes'), api('GET', '/v1/params')]);
  state.biomes = biomes; state.rgb = biomes.map((b) => hexRgb(b.color)); state.params = params;
  const legend = $('#legend');
  for (const b of biomes) {
    const sw = el('span', { class: 'sw' });
    sw.style.background = b.color; // CSSOM, allowed by the page's CSP (inline style attributes are not)
    legend.append(el('span', { title: b.doc, 'data-biome': b.name }, sw, b.name));
  }
  buildCreateForm();
  const worlds = await loadWorlds();
  await searchPlugins();
  const m = /world=(w[0-9a-f]+)/.exec(location.hash);
  if (m) await selectWorld(m[1]); else if (worlds.length) await selectWorld(worlds[worlds.length - 1].id);
  viewChanged();
  document.body.dataset.ready = 'true';
}
start().catch((e) => status('could not start: ' + e.message));
