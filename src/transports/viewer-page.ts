// The run viewer's page, script and style, served from /viewer. The page holds no data: the script
// asks /viewer/api/* for it with the operator's bearer token (typed in, or handed over once in the
// URL fragment, which never reaches the server or its logs) and sets everything it shows as text.

export const VIEWER_HTML =
  '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' +
  '<meta name="viewport" content="width=device-width, initial-scale=1">' +
  '<title>runledger · runs</title><link rel="stylesheet" href="/viewer/viewer.css"></head>' +
  '<body><header class="top"><h1>runledger <span>runs</span></h1><div id="who"></div></header>' +
  '<main><section id="login" hidden><form id="login-form">' +
  '<label for="token">Bearer token</label><input id="token" type="password" autocomplete="off" spellcheck="false">' +
  '<button type="submit">Show runs</button><p id="login-note" class="note"></p></form></section>' +
  '<section id="runs" hidden><div id="usage" class="usage"></div>' +
  '<form id="filters" class="filters"><label>Tool <select id="tool"><option value="">all tools</option></select></label>' +
  '<label>Phase <select id="phase"><option value="">all phases</option></select></label>' +
  '<button type="button" id="refresh">Refresh</button><span id="status" class="status"></span></form>' +
  '<table><thead><tr><th>Run</th><th>Tool</th><th>Phases</th><th>Images</th><th>Score</th><th>Charge</th></tr></thead>' +
  '<tbody id="rows"></tbody></table><p id="empty" class="empty" hidden>No runs match.</p>' +
  '<button type="button" id="more" hidden>Older runs</button></section></main>' +
  '<script src="/viewer/viewer.js"></script></body></html>';

export const VIEWER_CSS = `
:root { color-scheme: light dark; --bg: light-dark(#f6f6f7, #151517); --panel: light-dark(#fff, #1f1f23); --fg: light-dark(#18181b, #ececef);
  --fg2: light-dark(#5b5b66, #a1a1aa); --line: light-dark(#e4e4e7, #33333a); --ok: light-dark(#15803d, #4ade80); --bad: light-dark(#b91c1c, #f87171);
  --warn: light-dark(#a16207, #facc15); --accent: light-dark(#2563eb, #60a5fa); }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 13px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
header.top { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: var(--panel); border-bottom: 1px solid var(--line); }
header.top h1 { font-size: 16px; margin: 0; } header.top h1 span { color: var(--fg2); font-weight: 400; }
#who { margin-left: auto; color: var(--fg2); }
main { padding: 16px 20px; }
#login form { max-width: 380px; display: grid; gap: 8px; background: var(--panel); padding: 16px; border: 1px solid var(--line); border-radius: 8px; }
input, select, button { font: inherit; color: var(--fg); background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; }
button { cursor: pointer; }
.note { color: var(--bad); margin: 0; min-height: 1em; }
.usage { margin-bottom: 10px; color: var(--fg2); } .usage b { color: var(--fg); }
.filters { display: flex; gap: 12px; align-items: center; margin-bottom: 10px; flex-wrap: wrap; }
.status { color: var(--fg2); }
table { width: 100%; border-collapse: collapse; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--fg2); font-size: 12px; }
tr.run { cursor: pointer; } tr.run:hover { background: light-dark(#fafafa, #26262b); }
code { font-size: 12px; }
.sub { color: var(--fg2); font-size: 12px; display: block; }
.badge { display: inline-block; border-radius: 999px; padding: 0 8px; font-size: 12px; font-weight: 600; background: var(--bg); }
.badge.done { color: var(--ok); } .badge.failed, .badge.canceled { color: var(--bad); } .badge.live { color: var(--accent); }
ol.phases { list-style: none; margin: 4px 0 0; padding: 0; display: flex; gap: 6px; flex-wrap: wrap; font-size: 11px; color: var(--fg2); }
ol.phases li::after { content: " →"; } ol.phases li:last-child::after { content: ""; }
.thumbs { display: flex; gap: 4px; }
.thumbs img, .thumbs video, .thumbs .ph { width: 56px; height: 56px; object-fit: contain; background: var(--bg); border: 1px solid var(--line); border-radius: 4px; }
.score { font-weight: 700; } .score.high { color: var(--ok); } .score.mid { color: var(--warn); } .score.low { color: var(--bad); }
.failing { color: var(--bad); font-size: 12px; display: block; }
tr.detail td { background: var(--bg); }
.variant { margin: 4px 0 14px; display: grid; grid-template-columns: 220px 1fr; gap: 14px; } .variant h3 { font-size: 13px; margin: 0 0 4px; }
.variant img.large, .variant video.large { width: 220px; height: auto; border: 1px solid var(--line); border-radius: 6px; display: block; }
.variant ul { margin: 0; padding-left: 18px; } .variant li.fail { color: var(--bad); }
.variant li .ev { color: var(--fg2); } .variant li .fix { display: block; color: var(--fg); }
.empty { color: var(--fg2); }
#more { margin-top: 10px; }
`;

export const VIEWER_JS = `
'use strict';
(() => {
  const TERMINAL = new Set(['done', 'failed', 'canceled']);
  const TOKEN_KEY = 'runledger-viewer-token';
  const params = new URLSearchParams(location.search);
  const state = { token: sessionStorage.getItem(TOKEN_KEY) || '', tool: params.get('tool') || '', phase: params.get('phase') || '',
    runs: [], cursor: null, open: new Set(), images: new Map(), timer: null, loading: false };
  // A token handed over in the fragment (never sent to the server) is kept for this tab and wiped from the address bar.
  if (location.hash.startsWith('#token=')) {
    state.token = decodeURIComponent(location.hash.slice(7));
    sessionStorage.setItem(TOKEN_KEY, state.token);
    history.replaceState(null, '', location.pathname + location.search);
  }
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  const short = (s) => (s.length > 16 ? s.slice(0, 10) + '…' + s.slice(-4) : s);
  const when = (iso) => new Date(iso).toLocaleString();

  class Unauthorized extends Error {}
  async function get(path, as) {
    const response = await fetch(path, { headers: state.token ? { authorization: 'Bearer ' + state.token } : {}, cache: 'no-store' });
    if (response.status === 401) throw new Unauthorized('the token was not accepted');
    if (!response.ok) {
      let message = 'HTTP ' + response.status;
      try { message = (await response.json()).error.message || message; } catch {}
      throw new Error(message);
    }
    return as === 'blob' ? response.blob() : response.json();
  }

  function showLogin(message) {
    $('runs').hidden = true;
    $('login').hidden = false;
    $('login-note').textContent = message || '';
    $('who').textContent = '';
    $('token').focus();
  }

  async function load(reset) {
    if (state.loading) return;
    state.loading = true;
    $('status').textContent = 'loading…';
    const query = new URLSearchParams({ limit: '25' });
    if (state.tool) query.set('tool', state.tool);
    if (state.phase) query.set('phase', state.phase);
    if (!reset && state.cursor) query.set('cursor', state.cursor);
    try {
      const data = await get('/viewer/api/runs?' + query);
      state.runs = reset ? data.runs : state.runs.concat(data.runs);
      state.cursor = data.next_cursor;
      $('login').hidden = true;
      $('runs').hidden = false;
      $('who').textContent = 'tenant ' + data.tenant;
      renderUsage(data.usage);
      renderFilters(data.usage.tools, data.phases);
      renderRows();
      $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
      loadImages();
      schedule();
    } catch (err) {
      if (err instanceof Unauthorized) showLogin(state.token ? 'That token was not accepted.' : 'This server needs a bearer token.');
      else $('status').textContent = 'could not load runs: ' + err.message;
    } finally {
      state.loading = false;
    }
  }

  // While a shown run is still going, the list refreshes itself.
  function schedule() {
    clearTimeout(state.timer);
    if (state.runs.some((r) => !TERMINAL.has(r.phase))) state.timer = setTimeout(() => load(true), 2000);
  }

  const count = (n, one, many) => [el('b', {}, String(n)), ' ' + (n === 1 ? one : many)];
  function renderUsage(u) {
    $('usage').replaceChildren(...count(u.runs, 'run', 'runs'), ' · ', ...count(u.charges, 'charge', 'charges'), ' · ',
      ...count(u.credits, 'credit billed', 'credits billed'), ' · ', ...count(u.replays_absorbed, 'replay absorbed', 'replays absorbed'), ' (not billed)');
  }

  function renderFilters(tools, phases) {
    const fill = (select, values, current, all) => {
      const list = [...new Set([...values, ...(current ? [current] : [])])];
      select.replaceChildren(el('option', { value: '' }, all), ...list.map((v) => el('option', { value: v, selected: v === current ? 'selected' : null }, v)));
    };
    fill($('tool'), tools, state.tool, 'all tools');
    fill($('phase'), phases, state.phase, 'all phases');
  }

  function scoreBand(s) { return s === null ? '' : s >= 0.99 ? 'high' : s >= 0.75 ? 'mid' : 'low'; }
  function since(run, at) { const ms = Date.parse(at) - Date.parse(run.created_at); return ms <= 0 ? '0 s' : '+' + (ms / 1000).toFixed(1) + ' s'; }

  function renderRows() {
    const rows = [];
    for (const run of state.runs) {
      const live = !TERMINAL.has(run.phase);
      const failing = [...new Set(run.variants.flatMap((v) => v.checks.filter((c) => !c.passed).map((c) => c.id)))];
      rows.push(el('tr', { class: 'run', 'data-run': run.run_id, 'data-tool': run.tool, 'data-phase': run.phase, onclick: () => toggle(run.run_id) },
        el('td', {}, el('code', { title: run.run_id }, short(run.run_id)), el('span', { class: 'sub' }, when(run.created_at)),
          el('span', { class: 'sub', title: run.idempotency_key }, 'key ' + short(run.idempotency_key))),
        el('td', {}, run.tool, run.generator ? el('span', { class: 'sub' }, run.generator) : null),
        el('td', {}, el('span', { class: 'badge ' + (live ? 'live' : run.phase) }, run.phase + (live ? ' ' + Math.round(run.progress * 100) + '%' : '')),
          el('ol', { class: 'phases' }, run.phases.map((p) => el('li', { 'data-phase': p.phase }, p.phase + ' ' + since(run, p.at))))),
        el('td', {}, el('div', { class: 'thumbs' }, run.assets.map((a) => {
          const url = state.images.get(run.run_id + '/' + a.n);
          if (!url) return el('span', { class: 'ph', title: 'loading' });
          return a.mime.startsWith('video/')
            ? el('video', { src: url, muted: '', preload: 'metadata', 'data-n': a.n, title: 'video' + (a.width ? ', ' + a.width + '×' + a.height : '') })
            : el('img', { src: url, alt: 'image ' + (a.n + 1) + ' of ' + run.run_id, 'data-n': a.n, title: a.width + '×' + a.height });
        })), run.assets.length === 0 ? el('span', { class: 'sub' }, live ? 'not yet' : 'none') : null),
        el('td', {}, run.score === null ? el('span', { class: 'sub' }, '—')
          : [el('span', { class: 'score ' + scoreBand(run.score) }, run.score.toFixed(2)),
             el('span', { class: 'sub' }, run.variants.map((v) => v.passed + '/' + v.tested).join(' · ') + ' checks'),
             failing.length ? el('span', { class: 'failing' }, 'failed: ' + failing.join(', ')) : null]),
        el('td', { class: 'charge' }, run.charged > 0 ? run.charged + ' credits'
          : el('span', { class: 'sub' }, live ? run.cost_credits + ' when done' : 'not billed'))));
      if (state.open.has(run.run_id)) rows.push(detail(run));
    }
    $('rows').replaceChildren(...rows);
    $('empty').hidden = state.runs.length > 0;
    $('more').hidden = !state.cursor;
  }

  function detail(run) {
    const parts = [];
    if (run.error) parts.push(el('p', { class: 'failing' }, run.error.code + ': ' + run.error.message));
    parts.push(el('p', { class: 'sub' }, 'attempts ' + run.attempts + ' · cost ' + run.cost_credits + ' credits · charged ' + run.charged));
    for (const a of run.assets.filter((a) => a.mime.startsWith('video/'))) {
      const url = state.images.get(run.run_id + '/' + a.n);
      parts.push(el('div', { class: 'variant' },
        el('div', {}, url ? el('video', { src: url, controls: '', muted: '', class: 'large' }) : null),
        el('div', {}, el('h3', {}, 'Video ' + (a.n + 1) + ': not scored'), el('p', { class: 'sub' }, run.unscored.find((u) => u.n === a.n)?.reason || ''))));
    }
    for (const v of run.variants) {
      const url = state.images.get(run.run_id + '/' + v.n);
      parts.push(el('div', { class: 'variant' },
        el('div', {}, url ? el('img', { src: url, alt: 'image ' + (v.n + 1), class: 'large' }) : null),
        el('div', {}, el('h3', {}, 'Image ' + (v.n + 1) + ': score ' + v.score.toFixed(2) + ' (' + v.passed + ' of ' + v.tested + ' checks)'),
          el('ul', {}, v.checks.map((c) => el('li', { class: c.passed ? 'pass' : 'fail', 'data-check': c.id },
            (c.passed ? '✓ ' : '✗ ') + c.id + ': ', el('span', { class: 'ev' }, c.evidence), c.fix ? el('span', { class: 'fix' }, 'Fix: ' + c.fix) : null)),
            v.skipped.map((s) => el('li', { 'data-check': s.id }, '– ' + s.id + ': not checked, ' + s.reason))))));
    }
    return el('tr', { class: 'detail', 'data-detail': run.run_id }, el('td', { colspan: 6 }, parts));
  }

  function toggle(id) { if (state.open.has(id)) state.open.delete(id); else state.open.add(id); renderRows(); }

  async function loadImages() {
    for (const run of state.runs) {
      for (const a of run.assets) {
        const key = run.run_id + '/' + a.n;
        if (state.images.has(key)) continue;
        state.images.set(key, null);
        try {
          const blob = await get('/viewer/api/runs/' + encodeURIComponent(run.run_id) + '/assets/' + a.n, 'blob');
          state.images.set(key, URL.createObjectURL(blob));
        } catch (err) {
          state.images.delete(key);
          $('status').textContent = 'could not load an image: ' + err.message;
        }
        renderRows();
      }
    }
  }

  function syncUrl() {
    const q = new URLSearchParams();
    if (state.tool) q.set('tool', state.tool);
    if (state.phase) q.set('phase', state.phase);
    history.replaceState(null, '', location.pathname + (q.size ? '?' + q : ''));
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('token').value = '';
    load(true);
  });
  $('tool').addEventListener('change', () => { state.tool = $('tool').value; syncUrl(); load(true); });
  $('phase').addEventListener('change', () => { state.phase = $('phase').value; syncUrl(); load(true); });
  $('refresh').addEventListener('click', () => load(true));
  $('more').addEventListener('click', () => load(false));
  load(true);
})();
`;
