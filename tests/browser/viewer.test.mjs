// The web viewer in a real browser: Debian's chromium driven by playwright-core.
// Run by tests/it/viewer.rs against a live server:
//   WORLDLOOM_BASE=http://127.0.0.1:PORT WORLDLOOM_TOKEN=... WORLDLOOM_SCREENSHOTS=DIR node tests/browser/viewer.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.WORLDLOOM_BASE;
const token = process.env.WORLDLOOM_TOKEN;
const shots = process.env.WORLDLOOM_SCREENSHOTS || 'target/viewer-screenshots';
const executablePath = process.env.WORLDLOOM_CHROMIUM || '/usr/bin/chromium';
assert.ok(base && token, 'WORLDLOOM_BASE and WORLDLOOM_TOKEN must be set');
fs.mkdirSync(shots, { recursive: true });
const WAIT = 120_000;
const step = (what) => console.log(`-- ${what}`);

// The test's own API calls, each on a connection of its own (`agent: false`
// sends `Connection: close`): a pooled keep-alive connection can be closed by
// the server's idle timeout just as a request is written on it (undici then
// fails with "other side closed"), and the test is not about HTTP pooling.
function http(method, p, body) {
  const headers = { authorization: `Bearer ${token}` };
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  return new Promise((resolve, reject) => {
    const req = request(base + p, { method, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch (e) { reject(new Error(`${method} ${p}: ${res.statusCode}, not JSON: ${text.slice(0, 200)}`)); return; }
        if (res.statusCode < 200 || res.statusCode > 299) reject(new Error(`${method} ${p}: ${res.statusCode} ${text}`));
        else resolve(json);
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wl-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  viewport: { width: 1200, height: 860 },
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  timeout: 60_000,
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(WAIT);
const outside = [];
const errors = [];
page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) outside.push(r.url()); });
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

const frame = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
const settled = async (mode) => {
  await page.waitForFunction((m) => window.viewer.progress.mode === m && window.viewer.progress.done, mode, { timeout: WAIT });
  await frame();
};
const rgbOf = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
// Whether a pixel is a biome colour under hillshade (a common factor on every channel, clamped at 255).
function shadeOf(px, rgb) {
  const ratios = [];
  for (let c = 0; c < 3; c++) {
    if (px[c] === 255 || rgb[c] < 24) continue;
    ratios.push(px[c] / rgb[c]);
  }
  if (!ratios.length) return true;
  const lo = Math.min(...ratios), hi = Math.max(...ratios);
  return hi - lo < 0.06 && lo > 0.45 && hi < 1.45;
}
// The pixels of chunk (cx, cz) at scale 1, as [x][z] columns of [r, g, b].
async function chunkPixels(cx, cz) {
  return page.evaluate(([cx, cz]) => {
    const [px, py] = window.viewerApi.toScreen(cx * 32, cz * 32);
    const d = window.viewerApi.pixels(px, py, 32, 32);
    const out = [];
    for (let x = 0; x < 32; x++) for (let z = 0; z < 32; z++) { const p = (z * 32 + x) * 4; out.push([d[p], d[p + 1], d[p + 2]]); }
    return out;
  }, [cx, cz]);
}
async function canvasStats() {
  return page.evaluate(() => {
    const [w, h] = window.viewerApi.size();
    const d = window.viewerApi.pixels(0, 0, w, h);
    const colours = new Set();
    let background = 0;
    for (let p = 0; p < d.length; p += 4 * 7) {
      colours.add((d[p] << 16) | (d[p + 1] << 8) | d[p + 2]);
      if (d[p] === 11 && d[p + 1] === 13 && d[p + 2] === 16) background++;
    }
    return { colours: colours.size, background: background / (d.length / 28), w, h, sample: Array.from(d.filter((_, i) => i % 4 !== 3)) };
  });
}
function biomesSeen(sample, biomes) {
  const seen = new Map();
  for (let p = 0; p < sample.length; p += 3 * 11) {
    const px = [sample[p], sample[p + 1], sample[p + 2]];
    for (const b of biomes) {
      const rgb = rgbOf(b.color);
      if (Math.abs(px[0] - rgb[0]) + Math.abs(px[1] - rgb[1]) + Math.abs(px[2] - rgb[2]) < 4 || (b.id > 1 && shadeOf(px, rgb) && b.name !== 'snowy_peaks')) {
        seen.set(b.name, (seen.get(b.name) || 0) + 1);
      }
    }
  }
  return seen;
}

let passed = 0;
try {
  const { biomes } = await http('GET', '/v1/biomes');

  step('the page loads and shows the parameters, the legend and the token form');
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="true"]');
  const { params } = await http('GET', '/v1/params');
  for (const p of params) {
    const label = await page.locator(`#param-fields input[name="${p.name}"]`).locator('xpath=..').textContent();
    assert.ok(label.includes(`default ${p.default}`) && label.includes(p.doc), `${p.name}: ${label}`);
  }
  assert.equal(await page.locator('#legend [data-biome]').count(), biomes.length);
  await page.fill('#token', token);
  await page.click('#token-form button');
  assert.equal(await page.evaluate(() => localStorage.getItem('worldloom.token')), token);
  passed++;

  step('create a world through the form; the map draws streamed chunks');
  await page.click('#create-details summary');
  await page.fill('#create-form input[name="name"]', 'Browser world');
  await page.fill('#create-form input[name="seed"]', 'browser-test-seed');
  await page.fill('#create-form input[name="octaves"]', '5');
  await page.click('#create-button');
  await page.waitForFunction(() => window.viewer.world && window.viewer.world.name === 'Browser world');
  const world = await page.evaluate(() => window.viewer.world);
  assert.equal(world.params.octaves, 5);
  assert.equal(world.revision, 0);
  await settled('chunks');
  const progress = await page.innerText('#progress');
  assert.match(progress, /^(\d+)\/\1 chunks/, progress);
  await page.screenshot({ path: path.join(shots, '1-chunks.png') });
  let stats = await canvasStats();
  assert.ok(stats.colours > 30 && stats.background < 0.05, `the map is blank: ${JSON.stringify({ c: stats.colours, b: stats.background })}`);
  passed++;

  step('the centre chunk is drawn in its biomes\' colours, column by column');
  const centre = await http('GET', `/v1/worlds/${world.id}/chunks/0/0`);
  const pixels = await chunkPixels(0, 0);
  let matching = 0;
  for (let x = 0; x < 32; x++) for (let z = 0; z < 32; z++) {
    const rgb = rgbOf(biomes[centre.layers.biome[x][z]].color);
    if (shadeOf(pixels[x * 32 + z], rgb)) matching++;
  }
  assert.ok(matching > 0.85 * 1024, `only ${matching}/1024 columns of chunk (0, 0) show their biome's colour`);
  const seen = biomesSeen(stats.sample, biomes);
  assert.ok(seen.size >= 2, `expected biome colours on the map, saw ${JSON.stringify([...seen])}`);
  passed++;

  step('hovering a column shows its values, as the chunk JSON has them');
  const hover = async (wx, wz, offset = 0.5) => {
    const box = await page.locator('#map').boundingBox();
    const [px, py] = await page.evaluate(([x, z]) => window.viewerApi.toScreen(x, z), [wx, wz]);
    await page.mouse.move(box.x + px + offset, box.y + py + offset);
    await page.waitForFunction((v) => document.querySelector('#info-column').dataset.value === v, `${wx},${wz}`);
    const v = (id) => page.$eval('#info-' + id, (e) => e.dataset.value);
    return { height: Number(await v('height')), temperature: Number(await v('temperature')), moisture: Number(await v('moisture')), biome: Number(await v('biome')), features: Number(await v('features')), failures: Number(await v('failures')), text: await page.innerText('#info') };
  };
  const [hx, hz] = [5, 7];
  const shown = await hover(hx, hz);
  assert.equal(shown.height, Math.fround(centre.layers.height[hx][hz]), shown.text);
  assert.equal(shown.temperature, Math.fround(centre.layers.temperature[hx][hz]));
  assert.equal(shown.moisture, Math.fround(centre.layers.moisture[hx][hz]));
  assert.equal(shown.biome, centre.layers.biome[hx][hz]);
  assert.equal(shown.features, centre.features.filter((f) => f.x === hx && f.z === hz).length);
  assert.equal(shown.failures, centre.plugin_failures.length);
  assert.ok(shown.text.includes(biomes[centre.layers.biome[hx][hz]].name), shown.text);
  passed++;

  step('pan with the keyboard and by dragging; new chunks stream in');
  const view = () => page.evaluate(() => [window.viewer.vx, window.viewer.vz]);
  const start = await view();
  await page.locator('#map').focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('s');
  const moved = await view();
  assert.ok(moved[0] > start[0] && moved[1] > start[1], `${start} -> ${moved}`);
  await settled('chunks');
  const box = await page.locator('#map').boundingBox();
  await page.mouse.move(box.x + 300, box.y + 300);
  await page.mouse.down();
  await page.mouse.move(box.x + 500, box.y + 350, { steps: 5 });
  await page.mouse.up();
  const dragged = await view();
  assert.deepEqual([dragged[0] - moved[0], dragged[1] - moved[1]], [-200, -50]);
  await settled('chunks');
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('w');
  await page.mouse.move(box.x + 500, box.y + 350);
  await page.mouse.down();
  await page.mouse.move(box.x + 300, box.y + 300, { steps: 5 });
  await page.mouse.up();
  assert.deepEqual(await view(), start, 'panning back returns to the start');
  await settled('chunks');
  passed++;

  step('zoom out to 1:16 and further: the core-only overview shows continents');
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 200); // wheel: 1:1 -> 1:2
  await page.waitForFunction(() => window.viewerApi.scale() === 2);
  for (let i = 0; i < 3; i++) await page.click('#zoom-out');
  await page.waitForFunction(() => window.viewerApi.scale() === 16);
  await settled('overview');
  assert.equal(await page.innerText('#mode'), 'core-only overview (plugins not applied)');
  const [w, h] = await page.evaluate(() => window.viewerApi.size());
  assert.ok(w * 16 >= 8192 && h * 16 >= 8192, `the overview shows ${w * 16} x ${h * 16} columns`);
  await page.screenshot({ path: path.join(shots, '2-overview.png') });
  stats = await canvasStats();
  assert.ok(stats.colours > 30 && stats.background < 0.05, 'the overview is blank');
  const continents = biomesSeen(stats.sample, biomes);
  assert.ok(continents.size >= 3, `the overview shows few biomes: ${JSON.stringify([...continents])}`);
  const tile = await http('GET', `/v1/worlds/${world.id}/overview?x=0&z=0&step=16&size=4`);
  assert.equal(tile.source, 'core');
  // Hover in the overview reads its samples.
  const ov = await hover(0, 0, 0.02);
  assert.equal(ov.biome, tile.biome[0][0]);
  assert.equal(ov.height, Math.fround(tile.height[0][0]));
  await page.click('#zoom-out');
  await settled('overview');
  for (let i = 0; i < 5; i++) await page.click('#zoom-in');
  await page.waitForFunction(() => window.viewerApi.scale() === 1);
  await settled('chunks');
  passed++;

  step('attach a plugin in the workshop; the world redraws where it acts');
  const source = [
    'import numpy as np',
    '',
    'PARAMS = {"depth": {"default": 300.0, "min": 0.0, "max": 2000.0, "doc": "how far below sea level to sink"}}',
    '',
    'def terrain(ctx, chunk):',
    '    # Sinks every chunk whose coordinates are both even below the sea.',
    '    if ctx.cx % 2 == 0 and ctx.cz % 2 == 0:',
    '        chunk.height = np.full((ctx.size, ctx.size), -float(ctx.params["depth"]))',
    '    return chunk',
    '',
  ].join('\n');
  const name = 'sinkholes-' + Date.now().toString(36);
  await http('POST', '/v1/plugins', { name, version: '1.0.0', description: 'sinks even chunks below the sea', runtime: 'python', source });
  // An affected chunk with the most land, and its unaffected neighbour.
  let best = null;
  for (const [cx, cz] of [[0, 0], [-2, 0], [2, 0], [0, -2], [0, 2], [-2, -2], [2, 2], [-2, 2], [2, -2]]) {
    const c = await http('GET', `/v1/worlds/${world.id}/chunks/${cx}/${cz}`);
    const land = c.layers.biome.flat().filter((b) => b > 1).length;
    if (!best || land > best.land) best = { cx, cz, land };
  }
  assert.ok(best.land > 100, `no affected chunk near the centre has land: ${JSON.stringify(best)}`);
  const before = await chunkPixels(best.cx, best.cz);
  const controlBefore = await chunkPixels(best.cx + 1, best.cz);
  await page.fill('#plugin-search', name);
  await page.click(`#plugins li[data-name="${name}"]`);
  await page.waitForSelector('#attach-fields input[name="depth"]');
  assert.equal(await page.inputValue('#attach-fields input[name="depth"]'), '300');
  assert.ok((await page.textContent('#plugin-source')).includes('def terrain'), 'the source is shown');
  assert.ok((await page.innerText('#plugin-hooks')).includes('terrain'));
  assert.ok((await page.innerText('#plugin-params')).includes('how far below sea level'));
  await page.fill('#attach-fields input[name="depth"]', '500');
  await page.click('#attach-button');
  await page.waitForFunction(() => window.viewer.revision === 1, null, { timeout: WAIT });
  await settled('chunks');
  await page.waitForFunction(([cx, cz]) => { const c = window.viewer.chunks.get(cx + ',' + cz); return c && c.revision === 1; }, [best.cx, best.cz]);
  await frame();
  await page.screenshot({ path: path.join(shots, '3-plugin-attached.png') });
  const after = await chunkPixels(best.cx, best.cz);
  const controlAfter = await chunkPixels(best.cx + 1, best.cz);
  const deep = rgbOf(biomes.find((b) => b.name === 'deep_ocean').color);
  const changed = before.filter((p, i) => p.join() !== after[i].join()).length;
  const sunk = after.filter((p) => p.join() === deep.join()).length;
  assert.ok(changed >= best.land * 0.9, `only ${changed} pixels changed where the plugin acts (land ${best.land})`);
  assert.ok(sunk > 1000, `the sunk chunk is not deep ocean: ${sunk}/1024`);
  assert.deepEqual(controlAfter, controlBefore, 'the chunk the plugin leaves alone is unchanged');
  const sunkHover = await hover(best.cx * 32 + 3, best.cz * 32 + 3);
  assert.equal(sunkHover.height, -500);
  assert.ok((await page.innerText('#world-plugins')).includes(name));
  const stored = await http('GET', `/v1/worlds/${world.id}`);
  assert.equal(stored.revision, 1);
  assert.equal(stored.plugins[0].params.depth, 500);
  passed++;

  assert.deepEqual(outside, [], 'the page loaded nothing from elsewhere');
  assert.deepEqual(errors.filter((e) => !e.includes('favicon')), [], 'no errors in the page');
  console.log(`screenshots in ${shots}`);
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  await page.screenshot({ path: path.join(shots, 'failure.png') }).catch(() => {});
  console.error(e);
  console.error('page errors:', errors);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
