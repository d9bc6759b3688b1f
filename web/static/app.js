// twopc live view. Reads frames from /events (Server-Sent Events) and draws
// them; posts actions to api/act; fetches a transaction's events from
// api/trace for its sequence diagram. No library, nothing fetched from
// elsewhere.
'use strict';

const NS = 'http://www.w3.org/2000/svg';
const MAX_TXS = 500;      // transactions the list keeps
const MAX_ROWS = 200;     // rows it draws at once
const MAX_DOTS = 160;     // messages moving at once
const DOT_MS = 650;       // how long a message takes to cross

const S = {
  nodes: 0, actions: [], actionsWhy: '', windowSec: 300, tickMs: 250,
  offset: 0,              // server clock minus this browser's
  cards: [], partitions: [], txs: [], series: [], windows: [],
  selected: null, trace: null, step: 0, playTimer: null,
  txsDirty: true, built: false, lastFrame: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text, parent) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined && text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function sv(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined && text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

function serverNow() { return Date.now() + S.offset; }

function fmtBytes(n) {
  if (n < 0) return '–';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

function fmtCount(n) { return n < 0 ? '–' : String(n); }

function fmtAge(ms) {
  if (ms < 1000) return ms + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  return Math.floor(ms / 60000) + ' min ' + Math.floor((ms % 60000) / 1000) + ' s';
}

function fmtClock(ms) {
  const d = new Date(ms - S.offset);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

// kindOf names a message's colour class.
function kindOf(what) {
  if (what === 'Prepare') return 'k-prepare';
  if (what === 'Vote no') return 'k-voteno';
  if (what.startsWith('Vote')) return 'k-vote';
  if (what === 'Commit') return 'k-commit';
  if (what === 'Abort') return 'k-abort';
  if (what === 'Ack') return 'k-ack';
  if (what.startsWith('Decision')) return 'k-query';
  return 'k-other';
}

function toast(msg, isError) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('error', !!isError);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 9000 : 5000);
}

// ---- actions ----

async function act(body) {
  let res;
  try {
    res = await fetch('api/act', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body), credentials: 'same-origin',
    });
  } catch (e) {
    toast('the server did not answer: ' + e.message, true);
    return null;
  }
  let out = { ok: false, message: res.status + ' ' + res.statusText };
  try { out = await res.json(); } catch (e) { /* keep the status line */ }
  toast(out.message, !out.ok);
  return out;
}

function can(action) { return S.actions.includes(action); }

// ---- building the page once the first frame says what it shows ----

function build(hello) {
  S.nodes = hello.nodes;
  S.actions = hello.actions || [];
  S.actionsWhy = hello.actionsWhy || '';
  S.windowSec = hello.window;
  S.tickMs = hello.tickMs;
  $('title').textContent = hello.title;
  document.title = 'twopc — ' + hello.title;
  const note = $('note');
  note.textContent = hello.note || '';
  note.hidden = !hello.note;
  $('chart-span').textContent = 'up to the last ' + Math.round(S.windowSec / 60) + ' min';

  buildCards();
  buildFlow();
  const fnode = $('f-node');
  const keep = fnode.value;
  clear(fnode);
  el('option', { value: '' }, 'any', fnode);
  for (let i = 0; i < S.nodes; i++) el('option', { value: String(i) }, 'node ' + i, fnode);
  fnode.value = keep;
  buildActions();
  S.doubtSig = null;
  S.built = true;
}

function buildCards() {
  const box = $('cards');
  clear(box);
  S.cardEls = [];
  for (let i = 0; i < S.nodes; i++) {
    const c = el('article', { class: 'card', 'data-node': String(i), 'data-state': 'unknown' }, null, box);
    const head = el('div', { class: 'head' }, null, c);
    el('span', { class: 'name' }, 'node ' + i, head);
    const state = el('span', { class: 'state' }, '…', head);
    const addr = el('div', { class: 'addr' }, '', c);
    const dl = el('dl', {}, null, c);
    const f = {};
    for (const [key, label] of [['inFlight', 'in flight'], ['locks', 'locks'], ['inDoubt', 'in doubt'],
      ['log', 'log'], ['perFsync', 'records/fsync'], ['protocol', 'protocol'], ['skew', 'clock skew'],
      ['faults', 'faults'], ['incarnation', 'incarnation']]) {
      el('dt', {}, label, dl);
      f[key] = el('dd', { 'data-field': key }, '–', dl);
    }
    const why = el('div', { class: 'why' }, '', c);
    const acts = el('div', { class: 'card-actions' }, null, c);
    const crash = el('button', { type: 'button', 'data-act': 'crash', title: 'cut its power: writes not yet synced are lost' }, 'crash', acts);
    const restart = el('button', { type: 'button', 'data-act': 'restart', title: 'start it again from its log' }, 'restart', acts);
    crash.addEventListener('click', () => act({ do: 'crash', node: i }));
    restart.addEventListener('click', () => act({ do: 'restart', node: i }));
    acts.hidden = !(can('crash') || can('restart'));
    S.cardEls.push({ c, state, addr, f, why, crash, restart });
  }
}

function updateCards(cards) {
  S.cards = cards;
  for (const n of cards) {
    const e = S.cardEls && S.cardEls[n.id];
    if (!e) continue;
    e.c.dataset.state = n.state;
    e.state.textContent = n.state;
    e.addr.textContent = n.addr;
    e.f.inFlight.textContent = fmtCount(n.inFlight);
    e.f.locks.textContent = fmtCount(n.locks);
    e.f.inDoubt.textContent = fmtCount(n.inDoubt);
    const up = n.state === 'up' || n.state === 'partitioned';
    e.f.log.textContent = up ? fmtBytes(n.logBytes) : '–';
    e.f.perFsync.textContent = up && n.recordsPerFsync >= 0 ? n.recordsPerFsync.toFixed(1) : '–';
    e.f.protocol.textContent = n.protocol || '–';
    e.f.skew.textContent = n.skew || '0';
    e.f.faults.textContent = n.faults || 'none';
    e.f.incarnation.textContent = up ? String(n.incarnation) : '–';
    let why = n.why || '';
    if (n.cut && n.cut.length) why = 'cut off from node ' + n.cut.join(', ') + (why ? '; ' + why : '');
    e.why.textContent = why;
    e.crash.disabled = !can('crash') || n.state === 'down';
    e.restart.disabled = !can('restart') || n.state !== 'down';
  }
}

// ---- the flow: nodes on a circle, messages as moving dots ----

const FLOW = { w: 400, h: 300, r: 112, nodes: [], dots: [], raf: 0 };

function nodePos(i) {
  const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(S.nodes, 1);
  return [FLOW.w / 2 + FLOW.r * Math.cos(a), FLOW.h / 2 + FLOW.r * Math.sin(a)];
}

function buildFlow() {
  const svg = $('flow');
  clear(svg);
  svg.setAttribute('viewBox', `0 0 ${FLOW.w} ${FLOW.h}`);
  FLOW.links = sv('g', { class: 'links' }, svg);
  FLOW.linkEls = {};
  for (let i = 0; i < S.nodes; i++) {
    for (let j = i + 1; j < S.nodes; j++) {
      const [x1, y1] = nodePos(i), [x2, y2] = nodePos(j);
      FLOW.linkEls[i + '-' + j] = sv('line', { class: 'link', x1, y1, x2, y2, 'data-a': i, 'data-b': j }, FLOW.links);
    }
  }
  FLOW.dotLayer = sv('g', { class: 'dots' }, svg);
  FLOW.nodes = [];
  for (let i = 0; i < S.nodes; i++) {
    const [x, y] = nodePos(i);
    const g = sv('g', { class: 'fnode', 'data-node': i, 'data-state': 'unknown', transform: `translate(${x} ${y})` }, svg);
    const ring = sv('circle', { class: 'ring', r: 24 }, g);
    sv('circle', { class: 'body', r: 22 }, g);
    sv('line', { class: 'x', x1: -12, y1: -12, x2: 12, y2: 12 }, g);
    sv('line', { class: 'x', x1: 12, y1: -12, x2: -12, y2: 12 }, g);
    sv('text', { y: 1 }, g, 'n' + i);
    const sub = sv('text', { class: 'act', y: y < FLOW.h / 2 ? -32 : 36 }, g, '');
    FLOW.nodes.push({ g, ring, sub });
  }
  const lg = $('flow-legend');
  clear(lg);
  for (const [k, label] of [['k-prepare', 'Prepare'], ['k-vote', 'Vote yes'], ['k-voteno', 'Vote no'], ['k-commit', 'Commit'],
    ['k-abort', 'Abort'], ['k-ack', 'Ack'], ['k-query', 'DecisionQuery/Reply']]) {
    const s = el('span', {}, null, lg);
    el('i', { class: k }, null, s);
    s.appendChild(document.createTextNode(label));
  }
  el('span', {}, 'below a node: log writes forced/lazy and decisions in the last frame', lg);
}

function updateFlow(f) {
  for (const n of f.nodes || []) {
    const fn = FLOW.nodes[n.id];
    if (fn) fn.g.dataset.state = n.state;
  }
  const cut = new Set((f.partitions || []).map((p) => p[0] + '-' + p[1]));
  for (const k in FLOW.linkEls) FLOW.linkEls[k].classList.toggle('cut', cut.has(k));
  const busy = new Set();
  for (const a of f.activity || []) {
    const fn = FLOW.nodes[a.node];
    if (!fn) continue;
    busy.add(a.node);
    const parts = [];
    if (a.forced || a.lazy) parts.push('log ' + a.forced + '/' + a.lazy);
    if (a.commits || a.aborts) parts.push('✱ ' + a.commits + 'c ' + a.aborts + 'a');
    fn.sub.textContent = parts.join(' · ');
    pulse(fn.ring, a.commits || a.aborts ? (a.aborts && !a.commits ? 'decide-abort' : 'decide') : '');
  }
  FLOW.nodes.forEach((fn, i) => { if (!busy.has(i)) fn.sub.textContent = ''; });
  let total = 0;
  for (const l of f.links || []) total += l.count;
  const secs = S.tickMs / 1000;
  $('flow-rate').textContent = f.msgCount > (f.msgs || []).length
    ? `${Math.round(total / secs)} msg/s, ${f.msgs.length} of ${f.msgCount} drawn`
    : `${Math.round(total / secs)} msg/s`;
  launch(f.msgs || []);
}

function pulse(ring, extra) {
  ring.classList.remove('pulse', 'decide', 'decide-abort');
  void ring.getBoundingClientRect(); // restart the animation
  ring.classList.add('pulse');
  if (extra) ring.classList.add(extra);
}

// launch schedules a frame's messages, spread as they happened over the
// frame's span.
function launch(msgs) {
  if (!msgs.length || document.hidden) return;
  const t0 = msgs[0].at;
  const now = performance.now();
  for (const m of msgs) {
    if (FLOW.dots.length >= MAX_DOTS) break;
    if (m.from >= S.nodes || m.to >= S.nodes) continue;
    const [x1, y1] = nodePos(m.from), [x2, y2] = nodePos(m.to);
    // Each direction of a link on its own side, so both can be seen.
    const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
    const ox = (-dy / len) * 5, oy = (dx / len) * 5;
    const dot = sv('circle', { class: 'msg ' + kindOf(m.what), r: 4.5, cx: x1 + ox, cy: y1 + oy, 'data-what': m.what },
      FLOW.dotLayer);
    sv('title', {}, dot, `${m.what} ${m.from} → ${m.to} (${m.tx})`);
    FLOW.dots.push({ dot, x1: x1 + ox, y1: y1 + oy, x2: x2 + ox, y2: y2 + oy, start: now + Math.min(m.at - t0, S.tickMs) });
  }
  if (!FLOW.raf) FLOW.raf = requestAnimationFrame(animate);
}

function animate(ts) {
  FLOW.raf = 0;
  const keep = [];
  for (const d of FLOW.dots) {
    const p = (ts - d.start) / DOT_MS;
    if (p >= 1) { d.dot.remove(); continue; }
    keep.push(d);
    const q = Math.max(0, p);
    d.dot.setAttribute('cx', d.x1 + (d.x2 - d.x1) * q);
    d.dot.setAttribute('cy', d.y1 + (d.y2 - d.y1) * q);
  }
  FLOW.dots = keep;
  if (keep.length) FLOW.raf = requestAnimationFrame(animate);
}

function addMarks(marks) {
  const ol = $('ticker');
  for (const m of marks) {
    const li = el('li', { class: 'k-' + m.kind }, fmtClock(m.at) + '  ' + m.text);
    ol.insertBefore(li, ol.firstChild);
  }
  while (ol.children.length > 30) ol.removeChild(ol.lastChild);
}

// ---- the chart ----

function chartBox(svg) {
  const w = Math.max(svg.clientWidth || 0, 240), h = Math.max(svg.clientHeight || 0, 100);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  return { w, h, l: 54, r: 8, t: 8, b: 16 };
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const now = serverNow();
  // The chart spans what has been watched, at least a minute, at most the
  // window: a page just opened is not a thin strip at the right edge.
  let from = now - S.windowSec * 1000;
  const first = S.series.length ? S.series[0].t * 1000 : now;
  from = Math.max(from, Math.min(first, now - 60 * 1000));
  const pts = S.series.filter((p) => p.t * 1000 >= from);
  const span = Math.round((now - from) / 1000);
  const spanText = span >= 90 ? '−' + Math.round(span / 60) + ' min' : '−' + span + ' s';
  const rate = $('rate'), lat = $('latency');
  const specs = [
    { svg: rate, unit: '/s', lines: [['commits', (p) => p.c], ['aborts', (p) => p.a], ['unknown', (p) => p.u]] },
    { svg: lat, unit: 'ms', lines: [['p50', (p) => p.p50], ['p99', (p) => p.p99]] },
  ];
  for (const spec of specs) {
    const svg = spec.svg;
    clear(svg);
    const b = chartBox(svg);
    const x = (ms) => b.l + ((ms - from) / (now - from)) * (b.w - b.l - b.r);
    let top = 0;
    for (const p of pts) for (const [, get] of spec.lines) { const v = get(p); if (v !== null && v > top) top = v; }
    top = niceMax(top);
    const y = (v) => b.h - b.b - (v / top) * (b.h - b.t - b.b);
    // Fault windows first, under the lines.
    for (const w of S.windows) {
      const x1 = Math.max(x(w.from), b.l), x2 = Math.min(x(w.to || now), b.w - b.r);
      if (x2 < b.l || x1 > b.w - b.r) continue;
      const r = sv('rect', { class: 'fault fault-' + w.kind, 'data-kind': w.kind, x: x1, y: b.t, width: Math.max(x2 - x1, 2), height: b.h - b.t - b.b }, svg);
      sv('title', {}, r, w.label);
    }
    for (const frac of [0.5, 1]) {
      sv('line', { class: 'grid', x1: b.l, x2: b.w - b.r, y1: y(top * frac), y2: y(top * frac) }, svg);
      sv('text', { class: 'tick', x: b.l - 4, y: y(top * frac) + 3, 'text-anchor': 'end' }, svg, fmtNum(top * frac) + (frac === 1 ? ' ' + spec.unit : ''));
    }
    sv('line', { class: 'axis', x1: b.l, x2: b.w - b.r, y1: b.h - b.b, y2: b.h - b.b }, svg);
    sv('text', { class: 'tick', x: b.l, y: b.h - 3 }, svg, spanText);
    sv('text', { class: 'tick', x: b.w - b.r, y: b.h - 3, 'text-anchor': 'end' }, svg, 'now');
    for (const [name, get] of spec.lines) {
      // A line through consecutive seconds; a second alone (its
      // neighbours not watched, or without a transaction) is a dot.
      let d = '';
      pts.forEach((p, i) => {
        const v = get(p);
        if (v === null || v === undefined) return;
        const joined = i > 0 && pts[i - 1].t === p.t - 1 && get(pts[i - 1]) !== null;
        const next = pts[i + 1];
        const cx = x(p.t * 1000 + 500), cy = y(v);
        d += (joined ? 'L' : 'M') + cx.toFixed(1) + ' ' + cy.toFixed(1);
        if (!joined && !(next && next.t === p.t + 1 && get(next) !== null)) {
          sv('circle', { class: 'dot s-' + name, cx, cy, r: 2.5 }, svg);
        }
      });
      if (d) sv('path', { class: 'series s-' + name, d, 'data-series': name }, svg);
    }
  }
  const lg = $('chart-legend');
  if (!lg.firstChild) {
    for (const [c, label] of [['s-commits', 'commits/s'], ['s-aborts', 'aborts/s'], ['s-unknown', 'unknown/s'], ['s-p50', 'p50'], ['s-p99', 'p99'],
      ['sq fault-crash', 'node down'], ['sq fault-partition', 'partition'], ['sq fault-faults', 'message faults'], ['sq fault-skew', 'clock skew']]) {
      const s = el('span', {}, null, lg);
      el('i', { class: c }, null, s);
      s.appendChild(document.createTextNode(label));
    }
  }
  const ul = $('windows');
  clear(ul);
  for (const w of S.windows.slice(-8).reverse()) {
    el('li', { 'data-kind': w.kind }, `${w.label}: ${fmtClock(w.from)} – ${w.to ? fmtClock(w.to) : 'now'}`, ul);
  }
}

function fmtNum(v) {
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return v.toFixed(0);
  return String(Math.round(v * 10) / 10);
}

// ---- recent transactions ----

function addTxs(txs, replace) {
  if (replace) S.txs = [];
  for (const t of txs) S.txs.unshift(t); // newest first
  if (S.txs.length > MAX_TXS) S.txs.length = MAX_TXS;
  if (txs.length || replace) S.txsDirty = true;
}

function drawTxs() {
  if (!S.txsDirty) return;
  S.txsDirty = false;
  const outcome = $('f-outcome').value, node = $('f-node').value, text = $('f-text').value.trim().toLowerCase();
  const tbody = $('txs').tBodies[0];
  clear(tbody);
  let shown = 0, matching = 0;
  for (const t of S.txs) {
    if (outcome && t.outcome !== outcome) continue;
    if (node !== '' && t.node !== Number(node) && !t.participants.includes(Number(node))) continue;
    if (text && !t.tx.includes(text) && !(t.reason || '').toLowerCase().includes(text)) continue;
    matching++;
    if (shown >= MAX_ROWS) continue;
    shown++;
    const tr = el('tr', { 'data-tx': t.tx, 'data-outcome': t.outcome }, null, tbody);
    if (t.tx && t.tx === S.selected) tr.classList.add('selected');
    el('td', {}, t.tx || '(no id)', tr);
    el('td', {}, String(t.node), tr);
    el('td', { class: 'outcome-' + t.outcome }, t.outcome, tr);
    el('td', { class: 'num' }, t.ms.toFixed(1), tr);
    el('td', {}, t.participants.join(' '), tr);
    el('td', { class: 'reason' }, t.reason || '', tr);
    if (t.tx) tr.addEventListener('click', () => choose(t.tx));
  }
  $('txs-count').textContent = matching === S.txs.length ? `${S.txs.length}` : `${matching} of ${S.txs.length}`;
}

// ---- the sequence diagram ----

async function choose(tx) {
  S.selected = tx;
  S.txsDirty = true;
  drawTxs();
  stopPlay();
  $('diagram-head').textContent = 'loading ' + tx + '…';
  let res, data;
  try {
    res = await fetch('api/trace?tx=' + encodeURIComponent(tx));
    data = await res.json();
  } catch (e) {
    $('diagram-head').textContent = 'could not load ' + tx + ': ' + e.message;
    return;
  }
  if (S.selected !== tx) return; // another was chosen meanwhile
  if (!res.ok) {
    $('diagram-head').textContent = data.message || res.statusText;
    clear($('diagram'));
    $('replay').hidden = true;
    return;
  }
  S.trace = data;
  $('diagram-head').textContent = tx + ': ' + data.summary;
  drawDiagram(data);
  S.step = data.events.length;
  $('replay').hidden = false;
  showStep();
}

const D = { left: 64, col: 104, top: 34, row: 22 };

function drawDiagram(data) {
  const svg = $('diagram');
  clear(svg);
  const n = data.nodes, evs = data.events;
  const clientX = D.left + 24 + n * D.col - D.col * 0.3;
  const X = (i) => (i === -2 ? clientX : D.left + 24 + i * D.col);
  const textX = clientX + 24;
  const height = D.top + evs.length * D.row + 16;
  let textW = 0;
  for (const e of evs) textW = Math.max(textW, e.text.length * 6.2);
  const width = textX + textW + 12;
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const Y = (k) => D.top + k * D.row + D.row / 2;

  const bg = sv('g', {}, svg);
  for (let k = 0; k < evs.length; k++) {
    sv('rect', { class: 'row-bg', 'data-step': k + 1, x: 0, y: D.top + k * D.row, width, height: D.row }, bg);
  }
  for (let i = 0; i < n; i++) {
    sv('text', { class: 'lanehead', x: X(i), y: 18 }, svg, 'node ' + i);
    sv('line', { class: 'lane', 'data-node': i, x1: X(i), x2: X(i), y1: 26, y2: height - 6 }, svg);
  }
  sv('text', { class: 'lanehead', x: clientX, y: 18 }, svg, 'client');
  sv('line', { class: 'lane client', x1: clientX, x2: clientX, y1: 26, y2: height - 6 }, svg);
  sv('text', { class: 'ms', x: D.left - 8, y: 18 }, svg, '+ms');

  // Match each receive to the earliest send of the same message, so its
  // arrow runs from where it left to where it arrived.
  const pending = new Map();
  const key = (from, to, e) => from + '>' + to + '|' + e.what + '|' + (e.detail || '');
  const arrivals = new Array(evs.length).fill(-1);
  evs.forEach((e, k) => {
    if (e.kind === 'send') {
      const q = pending.get(key(e.node, e.peer, e)) || [];
      q.push(k);
      pending.set(key(e.node, e.peer, e), q);
    } else if (e.kind === 'receive') {
      const q = pending.get(key(e.peer, e.node, e));
      if (q && q.length) arrivals[q.shift()] = k;
    }
  });

  const marks = sv('g', {}, svg);
  evs.forEach((e, k) => {
    const step = k + 1;
    const y = Y(k);
    sv('text', { class: 'ms', x: D.left - 8, y: y + 3, 'data-step': step }, marks, e.ms.toFixed(3));
    sv('text', { class: 'etext', x: textX, y: y + 4, 'data-step': step }, marks, e.text);
    switch (e.kind) {
      case 'send': {
        const g = sv('g', { class: 'arrow ' + kindOf(e.what), 'data-step': step, 'data-from': e.node, 'data-to': e.peer, 'data-what': e.what }, marks);
        sv('title', {}, g, e.text);
        const x1 = X(e.node);
        if (e.peer === e.node) {
          g.classList.add('self');
          sv('path', { d: `M${x1} ${y} h16 v8 h-12` }, g);
          sv('polygon', { points: `${x1 + 2},${y + 8} ${x1 + 8},${y + 5} ${x1 + 8},${y + 11}` }, g);
          break;
        }
        const arrive = arrivals[k];
        if (arrive >= 0) g.dataset.arrive = arrive + 1;
        else if (e.peer !== -2) g.classList.add('unreceived');
        const x2 = X(e.peer), y2 = arrive >= 0 ? Y(arrive) : y;
        const dir = x2 > x1 ? 1 : -1;
        sv('line', { x1, y1: y, x2: x2 - dir * 7, y2 }, g);
        const ang = Math.atan2(y2 - y, x2 - x1);
        const hx = x2, hy = y2;
        const p1 = [hx - 8 * Math.cos(ang) + 4 * Math.sin(ang), hy - 8 * Math.sin(ang) - 4 * Math.cos(ang)];
        const p2 = [hx - 8 * Math.cos(ang) - 4 * Math.sin(ang), hy - 8 * Math.sin(ang) + 4 * Math.cos(ang)];
        sv('polygon', { points: `${hx},${hy} ${p1[0]},${p1[1]} ${p2[0]},${p2[1]}` }, g);
        sv('text', { x: (x1 + x2) / 2, y: (y + y2) / 2 - 4 }, g, e.what + (e.detail && e.what === 'DecisionReply' ? ': ' + e.detail : ''));
        break;
      }
      case 'receive':
        sv('circle', { class: 'recv', cx: X(e.node), cy: y, r: 2.5, 'data-step': step }, marks);
        break;
      case 'log': {
        const g = sv('g', { class: 'logmark', 'data-step': step, 'data-node': e.node }, marks);
        sv('rect', { class: 'log ' + (e.forced ? 'forced' : 'lazy'), x: X(e.node) - 5, y: y - 5, width: 10, height: 10 }, g);
        sv('text', { class: 'marklabel', x: X(e.node) + 9, y: y + 4 }, g, e.what + (e.forced ? ' (forced)' : ' (lazy)'));
        sv('title', {}, g, e.text);
        break;
      }
      case 'decision': {
        const g = sv('g', { class: 'decisionmark', 'data-step': step, 'data-node': e.node }, marks);
        const x = X(e.node);
        sv('polygon', { class: 'decision', points: `${x},${y - 8} ${x + 7},${y} ${x},${y + 8} ${x - 7},${y}` }, g);
        sv('text', { class: 'marklabel', x: x + 10, y: y + 4 }, g, 'decides ' + e.what);
        sv('title', {}, g, e.text);
        break;
      }
      case 'node': {
        const lanes = e.node < 0 ? [...Array(n).keys()] : [e.node].concat(e.peer >= 0 ? [e.peer] : []);
        const g = sv('g', { class: 'nodemark', 'data-step': step }, marks);
        sv('title', {}, g, e.text);
        for (const i of lanes) {
          const x = X(i);
          if (e.what.startsWith('crashed')) {
            const c = sv('g', { class: 'crash' }, g);
            sv('line', { x1: x - 7, y1: y - 7, x2: x + 7, y2: y + 7 }, c);
            sv('line', { x1: x + 7, y1: y - 7, x2: x - 7, y2: y + 7 }, c);
          } else if (e.what.startsWith('restarted') || e.what.startsWith('started')) {
            sv('polygon', { class: 'restart', points: `${x},${y - 8} ${x + 7},${y + 6} ${x - 7},${y + 6}` }, g);
          } else {
            sv('circle', { class: 'nodeev', cx: x, cy: y, r: 6 }, g);
          }
        }
        break;
      }
      default:
        sv('circle', { class: 'nodeev', cx: X(Math.max(e.node, 0)), cy: y, r: 4, 'data-step': step }, marks);
    }
  });
}

// showStep shows the diagram up to S.step: later marks hidden, a message
// sent but not yet arrived drawn as in flight.
function showStep() {
  const data = S.trace;
  if (!data) return;
  const n = data.events.length;
  S.step = Math.max(0, Math.min(S.step, n));
  for (const e of $('diagram').querySelectorAll('[data-step]')) {
    const step = Number(e.dataset.step);
    if (e.classList.contains('row-bg')) {
      e.classList.toggle('current', step === S.step && S.step < n);
      continue;
    }
    e.classList.toggle('future', step > S.step);
    if (e.dataset.arrive) e.classList.toggle('inflight', Number(e.dataset.arrive) > S.step);
  }
  const ev = data.events[S.step - 1];
  $('r-label').textContent = `step ${S.step} of ${n}` + (ev && S.step < n ? ': ' + ev.text : '');
  $('r-prev').disabled = $('r-first').disabled = S.step === 0;
  $('r-next').disabled = $('r-last').disabled = S.step === n;
}

function stopPlay() {
  if (S.playTimer) clearInterval(S.playTimer);
  S.playTimer = null;
  $('r-play').textContent = '▶ play';
}

function togglePlay() {
  if (S.playTimer) { stopPlay(); return; }
  if (!S.trace) return;
  if (S.step >= S.trace.events.length) S.step = 0;
  $('r-play').textContent = '⏸ pause';
  S.playTimer = setInterval(() => {
    S.step++;
    showStep();
    if (S.step >= S.trace.events.length) stopPlay();
  }, 450);
  showStep();
}

// ---- in doubt ----

function drawInDoubt(list, total) {
  const table = $('indoubt'), tbody = table.tBodies[0];
  $('indoubt-empty').hidden = list.length > 0;
  table.hidden = list.length === 0;
  $('indoubt-count').textContent = total > list.length ? `${list.length} of ${total} shown` : (total ? String(total) : '');
  // Rows are kept while the same transactions are in doubt and only their
  // cells change: a button must not be replaced under the pointer.
  const sig = JSON.stringify([list.map((d) => [d.tx, d.node]), S.actions]);
  if (sig !== S.doubtSig) {
    S.doubtSig = sig;
    clear(tbody);
    for (const d of list) {
      const tr = el('tr', { 'data-tx': d.tx, 'data-node': String(d.node) }, null, tbody);
      el('td', {}, d.tx, tr);
      el('td', {}, String(d.node), tr);
      el('td', { class: 'num' }, '', tr);
      el('td', { class: 'votes' }, null, tr);
      el('td', { class: 'waits' }, '', tr);
      const td = el('td', {}, null, tr);
      if (can('resolve')) {
        const b = el('button', { type: 'button', class: 'danger', 'data-act': 'resolve' }, 'resolve…', td);
        b.addEventListener('click', () => confirmResolve(S.doubts.get(d.tx + '/' + d.node) || d));
      }
    }
  }
  S.doubts = new Map();
  list.forEach((d, i) => {
    S.doubts.set(d.tx + '/' + d.node, d);
    const tr = tbody.rows[i];
    if (!tr) return;
    tr.cells[2].textContent = fmtAge(d.ageMs);
    const votes = tr.cells[3];
    const vs = (d.votes || []).map((v) => v.node + ': ' + v.vote).join('|');
    if (votes.dataset.v !== vs) {
      votes.dataset.v = vs;
      clear(votes);
      for (const v of d.votes || []) {
        const cls = v.vote === 'yes' ? 'vote-yes' : v.vote === 'no' ? 'vote-no' : 'vote-unk';
        el('span', { class: cls }, v.node + ': ' + v.vote, votes);
      }
    }
    const others = d.participants.filter((p) => p !== d.node);
    tr.cells[4].textContent = `coordinator node ${d.coordinator} (${d.coordinatorUp ? 'up' : 'down'})` +
      (others.length ? '; also asks node ' + others.join(', ') : '') + ` — ${d.asked} round${d.asked === 1 ? '' : 's'} asked`;
  });
}

function confirmResolve(d) {
  const dlg = $('confirm');
  $('confirm-h').textContent = 'Decide ' + d.tx + ' by hand?';
  const body = $('confirm-body');
  clear(body);
  el('p', {}, `Its coordinator, node ${d.coordinator}, is ${d.coordinatorUp ? 'up: it decides, and the cluster will refuse a heuristic decision while it runs' : 'down'}. ` +
    `The participants in doubt voted yes and hold their locks until they learn the outcome.`, body);
  el('p', {}, 'A heuristic decision is a guess. If the coordinator logged the other decision before it went down, ' +
    'the nodes will disagree for good: some will have applied the transaction and others not (heuristic damage). ' +
    'Nothing undoes that; the participants report it when the coordinator answers.', body);
  el('p', {}, `The cluster refuses if any running node knows the outcome. Restarting node ${d.coordinator} settles it without risk.`, body);
  const done = (decision) => {
    dlg.close();
    if (decision) act({ do: 'resolve', tx: d.tx, decision });
  };
  $('confirm-commit').onclick = () => done('commit');
  $('confirm-abort').onclick = () => done('abort');
  $('confirm-cancel').onclick = () => done(null);
  dlg.showModal();
}

// ---- actions panel ----

function buildActions() {
  const on = S.actions.some((a) => ['partition', 'heal', 'faults', 'skew'].includes(a));
  $('actions-on').hidden = !on;
  const off = $('actions-off');
  off.hidden = on;
  off.textContent = S.actionsWhy || (S.actions.length ? '' : 'This view only watches: act with the prompt.');
  for (const id of ['a-pa', 'a-pb', 'a-sn']) {
    const s = $(id);
    clear(s);
    for (let i = 0; i < S.nodes; i++) el('option', { value: String(i) }, 'node ' + i, s);
  }
  if (S.nodes > 1) $('a-pb').value = '1';
  $('a-partition').hidden = !can('partition');
  $('a-skew').hidden = !can('skew');
  $('a-faults').hidden = !can('faults');
}

function wireActions() {
  $('a-partition').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act({ do: 'partition', node: Number($('a-pa').value), peer: Number($('a-pb').value) });
  });
  $('a-heal').addEventListener('click', () => act({ do: 'heal' }));
  $('a-skew').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act({ do: 'skew', node: Number($('a-sn').value), skew: $('a-sd').value.trim() });
  });
  $('a-faults').addEventListener('submit', (ev) => {
    ev.preventDefault();
    act({
      do: 'faults', drop: Number($('a-drop').value) || 0, dup: Number($('a-dup').value) || 0,
      delay: Number($('a-delay').value) || 0, maxDelay: $('a-maxdelay').value.trim(), reorder: Number($('a-reorder').value) || 0,
    });
  });
  $('a-faults-off').addEventListener('click', () => act({ do: 'faults' }));
  for (const id of ['f-outcome', 'f-node', 'f-text']) {
    $(id).addEventListener('input', () => { S.txsDirty = true; drawTxs(); });
  }
  $('r-first').addEventListener('click', () => { stopPlay(); S.step = 0; showStep(); });
  $('r-prev').addEventListener('click', () => { stopPlay(); S.step--; showStep(); });
  $('r-next').addEventListener('click', () => { stopPlay(); S.step++; showStep(); });
  $('r-last').addEventListener('click', () => { stopPlay(); S.step = S.trace ? S.trace.events.length : 0; showStep(); });
  $('r-play').addEventListener('click', togglePlay);
}

// ---- frames ----

function onFrame(f) {
  S.offset = f.t - Date.now();
  S.lastFrame = Date.now();
  if (f.hello) {
    build(f.hello);
    S.series = f.series || [];
    addTxs(f.txs || [], true);
  } else {
    if (f.series) S.series.push(...f.series);
    addTxs(f.txs || [], false);
  }
  const cutoff = Math.floor(serverNow() / 1000) - S.windowSec - 1;
  while (S.series.length && S.series[0].t < cutoff) S.series.shift();
  S.windows = f.windows || [];
  S.partitions = f.partitions || [];
  updateCards(f.nodes || []);
  updateFlow(f);
  if (f.marks) addMarks(f.marks);
  drawChart();
  drawTxs();
  drawInDoubt(f.indoubt || [], f.indoubtTotal || 0);
  setConn(f.error ? 'stale' : 'live', f.error ? 'no fresh state: ' + f.error : 'live');
}

function setConn(state, text) {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = text;
}

function connect() {
  const es = new EventSource('events');
  es.onmessage = (ev) => {
    let f;
    try { f = JSON.parse(ev.data); } catch (e) { return; }
    onFrame(f);
  };
  // The browser reconnects by itself (the server says after how long);
  // the next hello rebuilds the page.
  es.onerror = () => setConn('reconnecting', 'reconnecting…');
}

window.addEventListener('DOMContentLoaded', () => {
  wireActions();
  window.addEventListener('resize', () => { if (S.built) drawChart(); });
  connect();
});
