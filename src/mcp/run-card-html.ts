// The run card's page: one self-contained HTML document (no network, no external scripts) that an MCP
// Apps host shows in a sandboxed iframe. It speaks the Apps protocol itself (JSON-RPC over postMessage:
// ui/initialize, then tools/call and resources/read through the host), so it needs no SDK bundle.
// Everything it shows is set as text, never as HTML: evidence and briefs are the caller's words.

const STYLE = `
:root {
  color-scheme: light dark;
  --bg: var(--color-background-primary, light-dark(#ffffff, #1b1b1d));
  --bg2: var(--color-background-secondary, light-dark(#f4f4f5, #26262a));
  --fg: var(--color-text-primary, light-dark(#18181b, #f4f4f5));
  --fg2: var(--color-text-secondary, light-dark(#52525b, #a1a1aa));
  --line: var(--color-border-primary, light-dark(#e4e4e7, #3f3f46));
  --ok: var(--color-text-success, light-dark(#15803d, #4ade80));
  --bad: var(--color-text-danger, light-dark(#b91c1c, #f87171));
  --warn: var(--color-text-warning, light-dark(#a16207, #facc15));
  --accent: var(--color-ring-primary, light-dark(#2563eb, #60a5fa));
  --radius: var(--border-radius-md, 8px);
  --font: var(--font-sans, system-ui, -apple-system, "Segoe UI", sans-serif);
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--fg); font: 13px/1.45 var(--font); }
main { padding: 14px 16px 16px; }
header { display: flex; align-items: baseline; gap: 8px; flex-wrap: wrap; }
h1 { font-size: 15px; margin: 0; }
.badge { border-radius: 999px; padding: 1px 8px; font-size: 12px; font-weight: 600; background: var(--bg2); }
.badge.done { color: var(--ok); } .badge.failed, .badge.canceled { color: var(--bad); }
.badge.running { color: var(--accent); }
.charge { margin-left: auto; color: var(--fg2); }
.meta { color: var(--fg2); font-size: 12px; margin: 2px 0 10px; word-break: break-all; }
ol.phases { list-style: none; display: flex; padding: 0; margin: 0 0 6px; }
ol.phases li { flex: 1; border-top: 3px solid var(--line); padding-top: 4px; font-size: 12px; color: var(--fg2); }
ol.phases li.reached { border-color: var(--accent); color: var(--fg); }
ol.phases li.current { font-weight: 600; }
ol.phases li.end-done { border-color: var(--ok); } ol.phases li.end-bad { border-color: var(--bad); }
ol.phases time { display: block; font-variant-numeric: tabular-nums; color: var(--fg2); font-weight: 400; }
progress { width: 100%; height: 6px; accent-color: var(--accent); }
.images { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px; margin: 12px 0; }
figure { margin: 0; border: 1px solid var(--line); border-radius: var(--radius); overflow: hidden; background: var(--bg2); }
figure .frame { background: repeating-conic-gradient(var(--bg2) 0 25%, var(--bg) 0 50%) 0 0 / 16px 16px; }
figure img { display: block; width: 100%; height: auto; }
figure .placeholder { aspect-ratio: 1; display: grid; place-items: center; color: var(--fg2); }
figcaption { padding: 8px 10px; }
.score { font-weight: 700; font-size: 14px; }
.score.low { color: var(--bad); } .score.mid { color: var(--warn); } .score.high { color: var(--ok); }
ul.checks { list-style: none; padding: 0; margin: 6px 0 0; }
ul.checks li { padding: 3px 0; border-top: 1px solid var(--line); font-size: 12px; }
ul.checks .id { font-weight: 600; }
ul.checks .pass .mark { color: var(--ok); } ul.checks .fail .mark { color: var(--bad); } ul.checks .skip .mark { color: var(--fg2); }
ul.checks .evidence { color: var(--fg2); display: block; }
ul.checks .pass .evidence { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
ul.checks .fix { display: block; }
.actions { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 10px; }
button { font: inherit; border-radius: var(--radius); border: 1px solid var(--line); background: var(--bg2); color: var(--fg); padding: 6px 12px; cursor: pointer; }
button.primary { border-color: var(--accent); }
button:disabled { opacity: 0.5; cursor: default; }
.explain { color: var(--fg2); font-size: 12px; margin: 6px 0 0; }
.note { margin-top: 8px; padding: 6px 10px; border-radius: var(--radius); background: var(--bg2); }
.note.error { color: var(--bad); }
.empty { color: var(--fg2); }
`;

const SCRIPT = `
const PHASES = ['queued', 'composing', 'rendering', 'done'];
const TERMINAL = new Set(['done', 'failed', 'canceled']);
const META = 'io.runledger/run';
let nextId = 1;
const pending = new Map();
const handlers = {};
let hostCapabilities = {};

function send(message) { window.parent.postMessage({ jsonrpc: '2.0', ...message }, '*'); }
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
function notify(method, params) { send({ method, params }); }
window.addEventListener('message', (event) => {
  if (event.source !== window.parent) return;
  const msg = event.data;
  if (!msg || msg.jsonrpc !== '2.0') return;
  if (msg.id !== undefined && msg.method === undefined) {
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    if (msg.error) waiter.reject(new Error(msg.error.message || 'request failed'));
    else waiter.resolve(msg.result);
    return;
  }
  if (msg.method === 'ping' && msg.id !== undefined) { send({ id: msg.id, result: {} }); return; }
  if (msg.method === 'ui/resource-teardown' && msg.id !== undefined) { stopped = true; send({ id: msg.id, result: {} }); return; }
  const handler = handlers[msg.method];
  if (handler) handler(msg.params || {});
  else if (msg.id !== undefined) send({ id: msg.id, error: { code: -32601, message: 'Method not found: ' + msg.method } });
});

// ---- state -----------------------------------------------------------------------------------
let view = null;          // the run as poll_run shows it
let origin = null;        // { tool, key, arguments }: the request behind the run
let toolInput = null;     // arguments the host says the tool was called with
let note = null;          // { text, error }
let images = {};          // n -> data: URL
let following = 0;        // bumps when another run is followed, so an older loop stops
let confirming = false;
let busy = false;
let stopped = false;

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  return node;
}
const short = (s) => (s && s.length > 14 ? s.slice(0, 8) + '…' + s.slice(-4) : s || '');
function since(at) {
  if (!view) return '';
  const ms = Date.parse(at) - Date.parse(view.created_at);
  return ms <= 0 ? new Date(at).toLocaleTimeString() : '+' + (ms / 1000).toFixed(1) + ' s';
}
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
}
function createName() { return origin && origin.tool ? origin.tool : view ? 'create_' + view.tool : null; }
function title(tool) { return (tool || 'run').replace(/^create_/, '').replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()); }

// ---- rendering -------------------------------------------------------------------------------
function render() {
  const root = $('card');
  root.replaceChildren();
  if (!view) {
    root.append(el('p', { class: 'empty', id: 'waiting' }, note ? note.text : 'Waiting for the run…'));
    return;
  }
  const running = !TERMINAL.has(view.phase);
  const billedText = view.billed ? view.cost_credits + ' credits, billed once' : running ? view.cost_credits + ' credits when done' : 'not billed';
  root.append(
    el('header', {},
      el('h1', {}, title(view.tool)),
      el('span', { class: 'badge ' + (running ? 'running' : view.phase), id: 'phase' }, view.phase),
      view.replayed ? el('span', { class: 'badge', id: 'replayed' }, 'replayed') : null,
      el('span', { class: 'charge', id: 'charge' }, billedText)),
    el('div', { class: 'meta' },
      'run ', el('code', { id: 'run-id', title: view.run_id }, short(view.run_id)),
      origin && origin.key ? [' · key ', el('code', { id: 'key', title: origin.key }, short(origin.key))] : null,
      ' · seed ', String(view.seed)),
  );
  const reached = new Map(view.phases.map((p) => [p.phase, p.at]));
  const ends = TERMINAL.has(view.phase) && view.phase !== 'done' ? [...PHASES.slice(0, 3), view.phase] : PHASES;
  root.append(el('ol', { class: 'phases', id: 'phases' }, ends.map((p) => {
    const at = reached.get(p);
    const cls = [at ? 'reached' : '', p === view.phase ? 'current' : '', p === view.phase && p === 'done' ? 'end-done' : '', p === view.phase && (p === 'failed' || p === 'canceled') ? 'end-bad' : ''].filter(Boolean).join(' ');
    return el('li', { class: cls, 'data-phase': p }, p, el('time', {}, at ? since(at) : '—'));
  })));
  if (running) root.append(el('progress', { max: 1, value: view.progress, id: 'progress' }));
  if (view.waiting) root.append(el('p', { class: 'note' }, view.waiting));
  if (view.error) root.append(el('p', { class: 'note error', id: 'error' }, view.error.code + ': ' + view.error.message));

  const evaluation = view.evaluation;
  if (view.assets.length > 0) {
    const byN = new Map(((evaluation && evaluation.variants) || []).map((v) => [v.n, v]));
    const unscored = new Map(((evaluation && evaluation.unscored) || []).map((u) => [u.n, u.reason]));
    root.append(el('div', { class: 'images', id: 'images' }, view.assets.map((a) => figure(a, byN.get(a.n), unscored.get(a.n)))));
  } else if (running) {
    root.append(el('p', { class: 'empty' }, 'Images appear here when the run is done.'));
  }

  const key = origin && origin.key;
  const cost = view.cost_credits;
  const canAct = !!createName() && !!(origin && origin.arguments) && !busy;
  root.append(el('div', { class: 'actions' },
    el('button', { id: 'reattach', disabled: !canAct || !key, onclick: reattach, title: 'Send the same request with the same idempotency key: the server answers with this same run, and bills nothing new.' }, 'Reattach (same key)'),
    confirming
      ? [el('button', { id: 'regenerate-confirm', class: 'primary', disabled: !canAct, onclick: regenerate }, 'Start a new run: ' + cost + ' credits'),
         el('button', { id: 'regenerate-cancel', onclick: () => { confirming = false; render(); } }, 'Cancel')]
      : el('button', { id: 'regenerate', disabled: !canAct, onclick: () => { confirming = true; render(); } }, 'Regenerate (new key)')));
  root.append(el('p', { class: 'explain', id: 'explain' },
    'Reattach re-sends this request with the same key: the same run comes back, never billed twice. ' +
    'Regenerate makes a new key and a new seed: a new run, billed again (' + cost + ' credits) when it is done.'));
  if (note) root.append(el('p', { class: 'note' + (note.error ? ' error' : ''), id: 'note' }, note.text));
}

function figure(asset, variant, unscored) {
  const src = images[asset.n];
  const score = variant ? variant.score : null;
  const band = score === null ? '' : score >= 0.99 ? 'high' : score >= 0.75 ? 'mid' : 'low';
  const video = (asset.mime || '').startsWith('video/');
  const size = asset.width && asset.height ? asset.width + '×' + asset.height : '';
  return el('figure', { 'data-n': asset.n },
    el('div', { class: 'frame' }, src
      ? video
        ? el('video', { src, controls: true, muted: true, playsinline: true, preload: 'metadata', 'aria-label': 'Video ' + (asset.n + 1), width: asset.width, height: asset.height })
        : el('img', { src, alt: 'Image ' + (asset.n + 1) + ', ' + size, width: asset.width, height: asset.height })
      : el('div', { class: 'placeholder' }, video ? 'loading video…' : 'loading image…')),
    el('figcaption', {},
      el('div', {},
        el('span', { class: 'score ' + band, title: unscored || null }, score === null ? (unscored ? 'not scored: ' + unscored : 'not scored') : 'brand score ' + score.toFixed(2)),
        variant ? ' · ' + variant.passed + ' of ' + variant.tested + ' checks passed' : '',
        size ? ' · ' + size : '',
        asset.duration_seconds ? ' · ' + asset.duration_seconds + ' s' : ''),
      variant ? el('ul', { class: 'checks' },
        variant.checks.map((c) => el('li', { class: c.passed ? 'pass' : 'fail', 'data-check': c.id },
          el('span', { class: 'mark' }, c.passed ? '✓ ' : '✗ '), el('span', { class: 'id' }, c.id),
          el('span', { class: 'evidence', title: c.passed ? c.evidence : null }, c.evidence),
          c.fix ? el('span', { class: 'fix' }, 'Fix: ' + c.fix) : null)),
        (variant.skipped || []).map((s) => el('li', { class: 'skip', 'data-check': s.id },
          el('span', { class: 'mark' }, '– '), el('span', { class: 'id' }, s.id), el('span', { class: 'evidence' }, 'not checked: ' + s.reason)))) : null));
}

// ---- talking to the server through the host --------------------------------------------------
async function callTool(name, args) {
  const result = await request('tools/call', { name, arguments: args });
  return result;
}

/** Takes a tool result that carries a run (create_*, poll_run). Returns false for anything else. */
function take(result) {
  const data = result && result.structuredContent;
  const meta = result && result._meta && result._meta[META];
  if (meta && meta.tool) origin = { tool: meta.tool, key: meta.idempotency_key, arguments: meta.arguments };
  if (data && data.run_id) {
    if (!view || view.run_id !== data.run_id) images = {};
    view = data;
    return true;
  }
  const error = data && data.error;
  note = { text: error ? error.code + ': ' + error.message : (result && result.content && result.content[0] && result.content[0].text) || 'No run in this answer.', error: true };
  return false;
}

async function follow() {
  const mine = ++following;
  while (view && !stopped && mine === following) {
    if (TERMINAL.has(view.phase)) {
      await loadImages(mine);
      return;
    }
    try {
      const result = await callTool('poll_run', { run_id: view.run_id, wait_seconds: 1 });
      if (mine !== following) return;
      if (take(result) && note && note.error) note = null;
    } catch (err) {
      note = { text: 'Could not poll the run: ' + err.message + '. Retrying…', error: true };
      await new Promise((r) => setTimeout(r, 2000));
    }
    render();
  }
}

async function loadImages(mine) {
  for (const asset of view.assets) {
    if (images[asset.n] || mine !== following) continue;
    try {
      if (hostCapabilities.serverResources) {
        const read = await request('resources/read', { uri: asset.uri });
        const item = read.contents && read.contents[0];
        if (item && item.blob) images[asset.n] = 'data:' + (item.mimeType || asset.mime) + ';base64,' + item.blob;
      } else if (asset.n === 0) {
        const polled = await callTool('poll_run', { run_id: view.run_id, inline_image: true });
        const block = (polled.content || []).find((c) => c.type === 'image');
        if (block) images[0] = 'data:' + block.mimeType + ';base64,' + block.data;
      }
    } catch (err) {
      note = { text: 'Could not load image ' + (asset.n + 1) + ': ' + err.message, error: true };
    }
    render();
  }
}

async function act(what, run) {
  if (busy) return;
  busy = true;
  confirming = false;
  render();
  try {
    await run();
  } catch (err) {
    note = { text: what + ' failed: ' + err.message, error: true };
  } finally {
    busy = false;
    render();
  }
  void follow();
}

function reattach() {
  return act('Reattach', async () => {
    const before = view.run_id;
    const result = await callTool(createName(), { ...origin.arguments, idempotency_key: origin.key });
    if (!take(result)) return;
    note = { text: view.run_id === before
      ? 'Reattached with the same key: the same run' + (view.replayed ? ', replayed' : '') + ', nothing new billed.'
      : 'Reattached with the same key: run ' + view.run_id + '.' };
  });
}

function regenerate() {
  return act('Regenerate', async () => {
    const before = view.run_id;
    const key = uuid();
    const seed = crypto.getRandomValues(new Uint32Array(1))[0];
    const args = { ...origin.arguments, seed, idempotency_key: key };
    const result = await callTool(createName(), args);
    if (!take(result)) return;
    origin = { tool: createName(), key, arguments: { ...origin.arguments, seed } };
    note = { text: 'Regenerated with a new key and seed ' + seed + ': new run ' + view.run_id + ' (was ' + before + '), billed when it is done.' };
  });
}

// ---- the host's notifications ----------------------------------------------------------------
handlers['ui/notifications/tool-input'] = (params) => {
  toolInput = params.arguments || {};
  if (!origin && toolInput.idempotency_key) {
    const { idempotency_key, wait_seconds, dry_run, ...rest } = toolInput;
    origin = { tool: null, key: idempotency_key, arguments: rest };
  }
};
handlers['ui/notifications/tool-result'] = (params) => {
  if (take(params)) { note = null; render(); void follow(); } else render();
};
handlers['ui/notifications/tool-cancelled'] = (params) => {
  note = { text: 'The tool call was cancelled' + (params.reason ? ': ' + params.reason : '') + '.', error: true };
  render();
};
handlers['ui/notifications/host-context-changed'] = (params) => applyContext(params);

function applyContext(context) {
  if (!context) return;
  const vars = context.styles && context.styles.variables;
  if (vars) for (const [k, v] of Object.entries(vars)) if (v) document.documentElement.style.setProperty(k, v);
  if (context.theme) document.documentElement.style.colorScheme = context.theme;
}

let lastSize = '';
function reportSize() {
  const width = Math.ceil(document.documentElement.scrollWidth);
  const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
  const size = width + 'x' + height;
  if (size === lastSize) return;
  lastSize = size;
  notify('ui/notifications/size-changed', { width, height });
}

async function start() {
  render();
  try {
    const init = await request('ui/initialize', {
      appInfo: { name: 'runledger-run-card', version: '1' },
      appCapabilities: { availableDisplayModes: ['inline'] },
      protocolVersion: '2026-01-26',
    });
    hostCapabilities = init.hostCapabilities || {};
    applyContext(init.hostContext);
    notify('ui/notifications/initialized', {});
  } catch (err) {
    note = { text: 'The host did not start the card: ' + err.message, error: true };
    render();
  }
  new ResizeObserver(reportSize).observe(document.body);
  reportSize();
}
void start();
`;

export function runCardHtml(): string {
  return (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>runledger run</title><style>${STYLE}</style></head>` +
    `<body><main id="card" aria-live="polite"></main><script>${SCRIPT}</script></body></html>`
  );
}
