// Torua cluster UI. Polls the coordinator's JSON API once a second (/v1/cluster,
// /v1/nodes, /v1/shards, /v1/moves) and updates the page in place, so focus and
// hover survive the refresh. Admin actions (drain, undrain, rebalance) ask first and
// send the admin token, kept in this tab's sessionStorage, as a Bearer header.
// No dependencies, no build step; the page's CSP allows no inline script or style.
'use strict';

(function () {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 4000;
  const HISTORY_MS = 60000;
  const TOKEN_KEY = 'torua.adminToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const SPARK_W = 96;
  const SPARK_H = 22;
  const RECENT_SHOWN = 25;
  const STATES = ['healthy', 'degraded', 'unhealthy', 'draining', 'drained', 'unknown'];
  const HEALTH_WORDS = { ok: 'ok', under_replicated: 'under-replicated', unavailable: 'unavailable' };

  const $ = (id) => document.getElementById(id);

  const ui = {
    nodes: new Map(), // node id -> row (elements, last view, heartbeat-age history)
    cells: [], // shard map buttons, in /v1/shards order
    shardIds: '', // the shard ids the map was built for
    shards: [], // the last /v1/shards list
    held: new Map(), // node id -> {p, r, copying}, derived from /v1/shards
    detail: null, // the shard shown in the detail line
    hover: null, // the node whose shards are highlighted
    active: 0, // the shard map's one tab stop (roving tabindex)
    lastStatus: null,
    pending: null, // the action the confirm dialog is asking about
    opener: null,
  };

  // ---- small helpers ----

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(e, t) {
    t = String(t);
    if (e.textContent !== t) e.textContent = t;
  }

  function setClass(e, c) {
    if (e.className !== c) e.className = c;
  }

  function byId(a, b) {
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function secs(s) {
    if (s === null || s === undefined || Number.isNaN(s)) return '—';
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 120) return Math.round(s) + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    if (s < 172800) return (s / 3600).toFixed(1) + ' h';
    return Math.round(s / 86400) + ' d';
  }

  // A move's duration: copies of small shards take milliseconds.
  function dur(s) {
    if (typeof s === 'number' && s < 1) return Math.round(s * 1000) + ' ms';
    return secs(s);
  }

  function ago(ms) {
    return secs(Math.max(0, (Date.now() - ms) / 1000)) + ' ago';
  }

  function fact(parts) {
    // parts: strings, or [text, className] for emphasised bits.
    const span = document.createDocumentFragment();
    for (const p of parts) {
      if (Array.isArray(p)) span.append(el(p[1] === 'b' ? 'b' : 'span', p[1] === 'b' ? '' : p[1], p[0]));
      else span.append(document.createTextNode(p));
    }
    return span;
  }

  // ---- the admin token: typed once, kept per tab, sent only as a header ----

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // storage disabled: the token lives as long as this call
    }
    showToken();
  }

  function showToken() {
    const has = token() !== '';
    $('token-set').hidden = !has;
    $('token-unset').hidden = has;
  }

  // ---- the API ----

  async function call(method, path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const headers = { Accept: 'application/json' };
    const t = method === 'GET' ? '' : token();
    if (t) headers.Authorization = 'Bearer ' + t;
    try {
      const r = await fetch(path, { method, headers, cache: 'no-store', signal: ctl.signal });
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      if (!r.ok) {
        const msg = body && body.error ? body.error.code + ': ' + body.error.message : 'HTTP ' + r.status;
        const e = new Error(msg);
        e.status = r.status;
        throw e;
      }
      return body;
    } catch (e) {
      if (e.name === 'AbortError') throw new Error('no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s');
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async function poll() {
    const started = Date.now();
    const got = await Promise.allSettled([
      call('GET', '/v1/cluster'),
      call('GET', '/v1/nodes'),
      call('GET', '/v1/shards'),
      call('GET', '/v1/moves'),
    ]);
    try {
      render(got);
    } catch (e) {
      console.error('torua ui: rendering failed', e);
    }
    setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
  }

  function render([c, n, s, m]) {
    const failed = [];
    if (s.status === 'fulfilled') {
      ui.shards = s.value.shards || [];
      ui.held = heldBy(ui.shards);
    }
    showError('shards-error', s, failed, '/v1/shards');
    if (c.status === 'fulfilled') renderCluster(c.value);
    else renderClusterDown(c.reason);
    if (c.status !== 'fulfilled') failed.push('/v1/cluster: ' + c.reason.message);
    if (n.status === 'fulfilled') renderNodes(n.value.nodes || []);
    showError('nodes-error', n, failed, '/v1/nodes');
    if (s.status === 'fulfilled') renderShards(ui.shards);
    if (m.status === 'fulfilled') renderMoves(m.value);
    showError('moves-error', m, failed, '/v1/moves');

    const conn = $('conn');
    if (failed.length === 0) {
      setClass(conn, 'conn');
      setText(conn, 'live · updated ' + new Date().toLocaleTimeString());
    } else {
      setClass(conn, 'conn bad');
      setText(conn, 'retrying every second · ' + failed[0]);
    }
    $('main').classList.toggle('stale', c.status !== 'fulfilled');
  }

  function showError(id, result, failed, what) {
    const e = $(id);
    if (result.status === 'fulfilled') {
      e.hidden = true;
      return;
    }
    const msg = what + ': ' + result.reason.message + ' (showing the last answer)';
    failed.push(what + ': ' + result.reason.message);
    setText(e, msg);
    e.hidden = false;
  }

  // ---- the cluster line ----

  function renderCluster(c) {
    const st = c.status || 'unknown';
    const pill = $('c-status');
    setClass(pill, 'pill status-' + st);
    setText(pill, st);
    pill.title = {
      green: 'every shard fully replicated',
      yellow: 'every shard available, some under-replicated',
      red: 'some shards unavailable',
    }[st] || '';
    if (ui.lastStatus !== null && ui.lastStatus !== st) setText($('announce'), 'Cluster is now ' + st);
    ui.lastStatus = st;

    const byState = c.nodes_by_state || {};
    const nodes = $('c-nodes');
    const frag = fact([[c.nodes, 'b'], c.nodes === 1 ? ' node ' : ' nodes ']);
    const pills = el('span', 'pills');
    for (const s of STATES) {
      if (byState[s] > 0) pills.append(el('span', 'pill state-' + s, byState[s] + ' ' + s), ' ');
    }
    frag.append(pills);
    nodes.replaceChildren(frag);

    const under = c.shards_under_replicated || 0;
    const unavail = c.shards_unavailable || 0;
    $('c-shards').replaceChildren(
      fact([
        [c.shards, 'b'],
        ' shards · ',
        [under + ' under-replicated', under > 0 ? 'state-degraded' : ''],
        ' · ',
        [unavail + ' unavailable', unavail > 0 ? 'state-unhealthy' : ''],
      ]),
    );

    const moves = fact([[c.moves_in_flight, 'b'], ' moves in flight']);
    if (c.moves_frozen) {
      moves.append(' · ');
      moves.append(el('span', 'frozen', 'moves FROZEN (storm guard)'));
    }
    $('c-moves').replaceChildren(moves);

    const co = c.coordinator || {};
    const coord = fact(['coordinator ', [co.id || '?', 'b'], ' (' + (co.role || '?') + ')']);
    if (!c.leader) coord.append(' · no leader known');
    else if (c.leader.id !== co.id) coord.append(fact([' · leader ', [c.leader.id, 'b'], ' ' + c.leader.url]));
    $('c-coord').replaceChildren(coord);

    setText(
      $('c-meta'),
      'cluster ' + c.cluster_id + ' · version ' + c.version + ' · up ' + secs(c.uptime_seconds) +
        ' · replication factor ' + c.replication_factor,
    );
  }

  function renderClusterDown(err) {
    const pill = $('c-status');
    setClass(pill, 'pill status-unknown');
    setText(pill, 'unknown');
    pill.title = 'the coordinator did not answer: ' + err.message;
  }

  // ---- nodes ----

  function heldBy(shards) {
    const held = new Map();
    const get = (n) => {
      let h = held.get(n);
      if (!h) held.set(n, (h = { p: 0, r: 0, copying: 0 }));
      return h;
    };
    for (const s of shards) {
      if (s.primary) get(s.primary).p += 1;
      for (const r of s.replicas || []) {
        if (r.in_sync) get(r.node).r += 1;
        else get(r.node).copying += 1;
      }
    }
    return held;
  }

  function makeRow(id) {
    const tr = el('tr');
    tr.dataset.node = id;
    const th = el('th', 'id', id);
    th.scope = 'row';
    const row = {
      tr,
      state: el('span', 'pill'),
      reason: el('td', 'reason'),
      phi: el('td', 'num'),
      age: el('td', 'num'),
      checks: el('div', 'checks'),
      shards: el('td', 'num'),
      load: el('td', 'num nowrap'),
      capacity: el('td', 'nowrap'),
      action: el('button'),
      hist: [],
      checksKey: null,
    };
    const stateTd = el('td', 'nowrap');
    stateTd.append(row.state);
    const sparkTd = el('td');
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', SPARK_W);
    svg.setAttribute('height', SPARK_H);
    svg.setAttribute('viewBox', '0 0 ' + SPARK_W + ' ' + SPARK_H);
    svg.setAttribute('role', 'img');
    row.sparkTitle = document.createElementNS(SVG_NS, 'title');
    const base = document.createElementNS(SVG_NS, 'line');
    base.setAttribute('x1', 0);
    base.setAttribute('x2', SPARK_W);
    base.setAttribute('y1', SPARK_H - 0.5);
    base.setAttribute('y2', SPARK_H - 0.5);
    row.line = document.createElementNS(SVG_NS, 'polyline');
    svg.append(row.sparkTitle, base, row.line);
    sparkTd.append(svg);
    const checksTd = el('td');
    checksTd.append(row.checks);
    const actionTd = el('td');
    row.action.type = 'button';
    actionTd.append(row.action);
    tr.append(th, stateTd, row.reason, row.phi, row.age, sparkTd, checksTd, row.shards, row.load, row.capacity, actionTd);
    return row;
  }

  function renderNodes(list) {
    list.sort((a, b) => byId(a.id, b.id));
    const tbody = $('node-rows');
    const now = Date.now();
    const seen = new Set();
    list.forEach((n, i) => {
      seen.add(n.id);
      let row = ui.nodes.get(n.id);
      if (!row) {
        row = makeRow(n.id);
        ui.nodes.set(n.id, row);
      }
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
      updateRow(row, n, now);
    });
    for (const [id, row] of ui.nodes) {
      if (!seen.has(id)) {
        row.tr.remove();
        ui.nodes.delete(id);
      }
    }
    setText($('nodes-count'), '(' + list.length + ')');
  }

  function updateRow(row, n, now) {
    row.view = n;
    row.tr.dataset.state = n.state;
    setClass(row.tr, 'state-row-' + n.state + (ui.hover === n.id ? ' hl' : ''));
    setClass(row.state, 'pill state-' + n.state);
    setText(row.state, n.state);
    setText(row.reason, n.reason || '');
    const age = n.heartbeat_age_seconds;
    setText(row.phi, n.phi === null || n.phi === undefined ? (age !== null ? '∞' : '—') : n.phi.toFixed(1));
    setText(row.age, secs(age));

    row.hist.push([now, age]);
    while (row.hist.length && row.hist[0][0] < now - HISTORY_MS) row.hist.shift();
    drawSpark(row, now);

    const checks = n.checks || [];
    const key = checks.map((c) => c.name + '\u0000' + c.kind + '\u0000' + c.status + '\u0000' + (c.message || '')).join('\u0001');
    if (key !== row.checksKey) {
      row.checksKey = key;
      // Checks that do not pass by name, the passing ones as a count (names on hover).
      const describe = (c) => c.name + ' (' + c.kind + '): ' + c.status + (c.message ? ': ' + c.message : '');
      const passing = checks.filter((c) => c.status === 'pass');
      const badges = checks
        .filter((c) => c.status !== 'pass')
        .map((c) => {
          const b = el('span', 'chk chk-' + c.status, ({ warn: '! ', fail: '✗ ' }[c.status] || '? ') + c.name + ' ' + c.status);
          b.title = describe(c);
          return b;
        });
      if (passing.length) {
        const b = el('span', 'chk chk-pass', '✓ ' + (passing.length === 1 ? passing[0].name + ' pass' : passing.length + ' pass'));
        b.title = passing.map(describe).join('\n');
        badges.push(b);
      }
      if (badges.length === 0) badges.push(el('span', 'none', 'none reported'));
      row.checks.replaceChildren(...badges);
    }

    const h = ui.held.get(n.id) || { p: 0, r: 0, copying: 0 };
    setText(row.shards, h.p + ' / ' + h.r + (h.copying ? ' (+' + h.copying + ' copying)' : ''));
    // Null until the leader has sampled the node (or with load balancing off).
    const load = n.load;
    setText(row.load, load ? load.score.toFixed(1) + ' · ' + Math.round(load.reads + load.writes) + ' op/s' : '—');
    const cap = n.capacity || {};
    setText(row.capacity, 'weight ' + (cap.weight ?? 1) + (cap.max_shards != null ? ' · max ' + cap.max_shards : ''));

    const action = n.admin_drain ? 'undrain' : 'drain';
    if (row.action.dataset.action !== action) {
      row.action.dataset.action = action;
      setText(row.action, action === 'drain' ? 'Drain…' : 'Undrain…');
      row.action.setAttribute('aria-label', (action === 'drain' ? 'Drain ' : 'Undrain ') + n.id);
    }
  }

  function drawSpark(row, now) {
    let peak = 0;
    for (const [, a] of row.hist) if (a !== null && a > peak) peak = a;
    // At least 3 s tall: a heartbeat a second is a low ripple, a silence a climb.
    const top = Math.max(3, peak);
    const t0 = now - HISTORY_MS;
    const points = [];
    for (const [t, a] of row.hist) {
      if (a === null) continue;
      const x = ((t - t0) / HISTORY_MS) * (SPARK_W - 2) + 1;
      const y = SPARK_H - 1 - (Math.min(a, top) / top) * (SPARK_H - 3);
      points.push(x.toFixed(1) + ',' + y.toFixed(1));
    }
    row.line.setAttribute('points', points.join(' '));
    const last = row.hist.length ? row.hist[row.hist.length - 1][1] : null;
    setText(row.sparkTitle, 'heartbeat age over the last minute: now ' + secs(last) + ', peak ' + secs(peak));
  }

  // ---- the shard map ----

  function cellClass(s) {
    const copying = (s.replicas || []).some((r) => !r.in_sync);
    let cls = 'cell h-' + s.health;
    if (copying) cls += ' copying';
    if (ui.hover !== null && holds(s, ui.hover)) cls += ' hl';
    if (ui.detail === s.id) cls += ' selected';
    return cls;
  }

  function holds(s, node) {
    return s.primary === node || (s.replicas || []).some((r) => r.node === node);
  }

  function shardLabel(s) {
    const reps = (s.replicas || []).map((r) => r.node + (r.in_sync ? '' : ' (copying)'));
    return (
      'shard ' + s.id + ': ' + (HEALTH_WORDS[s.health] || s.health) + ', epoch ' + s.epoch +
      ', primary ' + (s.primary || 'none') +
      (reps.length ? ', replicas ' + reps.join(', ') : ', no replicas') +
      (s.pinned ? ', pinned to ' + s.pinned.join(', ') : '')
    );
  }

  function renderShards(list) {
    const grid = $('shard-grid');
    const ids = list.map((s) => s.id).join(',');
    if (ids !== ui.shardIds) {
      ui.shardIds = ids;
      ui.cells = list.map((s, i) => {
        const b = el('button', 'cell', s.id);
        b.type = 'button';
        b.dataset.shard = s.id;
        b.tabIndex = i === 0 ? 0 : -1;
        return b;
      });
      ui.active = 0;
      grid.replaceChildren(...ui.cells);
    }
    list.forEach((s, i) => {
      const cell = ui.cells[i];
      setClass(cell, cellClass(s));
      const label = shardLabel(s);
      if (cell.getAttribute('aria-label') !== label) {
        cell.setAttribute('aria-label', label);
        cell.title = label;
      }
    });
    const under = list.filter((s) => s.health !== 'ok').length;
    setText($('shards-count'), '(' + list.length + (under ? ', ' + under + ' not ok' : '') + ')');
    if (ui.detail !== null) showDetail(ui.detail);
  }

  function showDetail(id) {
    const s = ui.shards.find((x) => x.id === id);
    const p = $('shard-detail');
    if (!s) return;
    if (ui.detail !== id) {
      ui.detail = id;
      ui.shards.forEach((x, i) => ui.cells[i] && setClass(ui.cells[i], cellClass(x)));
    }
    const nodeState = (n) => {
      const row = ui.nodes.get(n);
      return row && row.view ? row.view.state : 'unknown';
    };
    const holder = (n, note) => {
      const f = document.createDocumentFragment();
      f.append(el('b', '', n), ' ');
      f.append(el('span', 'pill state-' + nodeState(n), nodeState(n) + (note ? ', ' + note : '')));
      return f;
    };
    const parts = document.createDocumentFragment();
    parts.append(el('b', '', 'Shard ' + s.id), ' · ');
    parts.append(el('span', 'pill ' + ({ ok: 'state-healthy', under_replicated: 'state-degraded' }[s.health] || 'state-unhealthy'),
      HEALTH_WORDS[s.health] || s.health));
    parts.append(' · epoch ' + s.epoch + ' · primary ');
    if (s.primary) parts.append(holder(s.primary, ''));
    else parts.append(el('span', 'muted', 'none'));
    parts.append(' · replicas ');
    const reps = s.replicas || [];
    if (reps.length === 0) parts.append(el('span', 'muted', 'none'));
    reps.forEach((r, i) => {
      if (i) parts.append(', ');
      parts.append(holder(r.node, r.in_sync ? 'in sync' : 'copying'));
    });
    if (s.pinned) parts.append(' · pinned to ' + s.pinned.join(', '));
    p.replaceChildren(parts);
  }

  function columns() {
    const top = ui.cells[0].offsetTop;
    let n = 0;
    for (const c of ui.cells) {
      if (c.offsetTop !== top) break;
      n += 1;
    }
    return Math.max(1, n);
  }

  function focusCell(j) {
    if (ui.cells[ui.active]) ui.cells[ui.active].tabIndex = -1;
    ui.active = j;
    ui.cells[j].tabIndex = 0;
    ui.cells[j].focus();
  }

  function highlight(node) {
    if (ui.hover === node) return;
    ui.hover = node;
    ui.shards.forEach((s, i) => ui.cells[i] && setClass(ui.cells[i], cellClass(s)));
    for (const [id, row] of ui.nodes) row.tr.classList.toggle('hl', id === node);
  }

  // ---- moves ----

  function route(m) {
    return (m.from || '—') + ' → ' + m.to;
  }

  function fillRows(tbody, moves, cols, cells) {
    if (moves.length === 0) {
      const td = el('td', 'none', 'none');
      td.colSpan = cols;
      const tr = el('tr');
      tr.append(td);
      tbody.replaceChildren(tr);
      return;
    }
    tbody.replaceChildren(
      ...moves.map((m) => {
        const tr = el('tr');
        tr.append(...cells(m));
        return tr;
      }),
    );
  }

  function renderMoves(m) {
    const inFlight = m.in_flight || [];
    const recent = m.recent || [];
    setText($('inflight-count'), '(' + inFlight.length + (m.frozen ? ', frozen' : '') + ')');
    setText($('recent-count'), '(' + recent.length + (recent.length > RECENT_SHOWN ? ', newest ' + RECENT_SHOWN + ' shown' : '') + ')');
    // An in-flight move's duration is published when it ends: until then it has
    // run since started_ms (the coordinator's clock, read against this browser's).
    const running = (x) => x.duration_seconds || Math.max(0, (Date.now() - x.started_ms) / 1000);
    fillRows($('inflight-rows'), inFlight, 5, (x) => [
      el('td', 'num', x.shard),
      el('td', 'nowrap', route(x)),
      el('td', '', x.reason),
      el('td', '', x.state),
      el('td', 'num', dur(running(x))),
    ]);
    fillRows($('recent-rows'), recent.slice(0, RECENT_SHOWN), 6, (x) => {
      const result = el('td');
      result.append(el('span', 'pill ' + (x.state === 'ok' ? 'state-healthy' : 'state-unhealthy'), x.state));
      if (x.error) result.append(' ' + x.error);
      return [
        el('td', 'num', x.shard),
        el('td', 'nowrap', route(x)),
        el('td', '', x.reason),
        result,
        el('td', 'num', dur(x.duration_seconds)),
        el('td', 'nowrap', ago(x.started_ms)),
      ];
    });
  }

  // ---- actions: each asks first ----

  function ask(action, opener) {
    ui.pending = action;
    ui.opener = opener;
    setText($('confirm-title'), action.title);
    setText($('confirm-text'), action.text);
    setText($('confirm-ok'), action.ok);
    const needToken = token() === '';
    $('confirm-token-row').hidden = !needToken;
    $('confirm-token').value = '';
    $('confirm-unfreeze-row').hidden = !action.unfreeze;
    $('confirm-unfreeze').checked = false;
    $('confirm').showModal();
    (needToken ? $('confirm-token') : $('confirm-cancel')).focus();
  }

  function closeDialog() {
    const d = $('confirm');
    if (d.open) d.close();
    ui.pending = null;
    if (ui.opener && document.contains(ui.opener)) ui.opener.focus();
  }

  async function confirmed() {
    const action = ui.pending;
    if (!action) return;
    const typed = $('confirm-token').value;
    if (!$('confirm-token-row').hidden && typed) setToken(typed);
    const unfreeze = $('confirm-unfreeze').checked;
    closeDialog();
    const out = $('action-result');
    setClass(out, 'action-result');
    setText(out, action.ok + '…');
    try {
      const r = await action.run(unfreeze);
      setClass(out, 'action-result ok');
      setText(out, action.done(r));
    } catch (e) {
      setClass(out, 'action-result bad');
      if (e.status === 401) {
        setToken('');
        setText(out, action.ok + ' refused: the coordinator wants its admin token (' + e.message + '). Try again and type it.');
      } else {
        setText(out, action.ok + ' failed: ' + e.message);
      }
    }
  }

  function nodeAction(id, drain) {
    const verb = drain ? 'drain' : 'undrain';
    return {
      title: (drain ? 'Drain ' : 'Undrain ') + id + '?',
      text: drain
        ? id + ' hands its primaries to in-sync replicas and its copies move to other nodes, ' +
          'a few at a time; it keeps serving meanwhile.'
        : id + ' takes shards again; placement may move some back to it.',
      ok: (drain ? 'Drain ' : 'Undrain ') + id,
      run: () => call('POST', '/v1/nodes/' + encodeURIComponent(id) + '/' + verb),
      done: (r) => r.node + ' is ' + r.state,
    };
  }

  const rebalanceAction = {
    title: 'Rebalance now?',
    text: 'Placement runs now, skipping rebalance_delay: shards may move to their preferred nodes.',
    ok: 'Rebalance',
    unfreeze: true,
    run: (unfreeze) => call('POST', '/v1/rebalance' + (unfreeze ? '?unfreeze=true' : '')),
    done: (r) => 'rebalance ' + r.rebalance + (r.unfreeze ? ', freeze lifted' : ''),
  };

  // ---- wiring ----

  function wire() {
    showToken();
    $('token-unset').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('token-input').value;
      $('token-input').value = '';
      if (v) {
        setToken(v);
        $('token-forget').focus();
      }
    });
    $('token-forget').addEventListener('click', () => {
      setToken('');
      $('token-input').focus();
    });
    $('rebalance').addEventListener('click', (e) => ask(rebalanceAction, e.currentTarget));
    $('confirm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      confirmed();
    });
    $('confirm-cancel').addEventListener('click', closeDialog);
    $('confirm').addEventListener('cancel', (e) => {
      e.preventDefault();
      closeDialog();
    });

    const rows = $('node-rows');
    rows.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action]');
      if (!b) return;
      ask(nodeAction(b.closest('tr').dataset.node, b.dataset.action === 'drain'), b);
    });
    const rowOf = (e) => {
      const tr = e.target.closest('tr[data-node]');
      return tr ? tr.dataset.node : null;
    };
    rows.addEventListener('mouseover', (e) => highlight(rowOf(e)));
    rows.addEventListener('focusin', (e) => highlight(rowOf(e)));
    rows.addEventListener('mouseleave', () => highlight(null));
    rows.addEventListener('focusout', (e) => {
      if (!rows.contains(e.relatedTarget)) highlight(null);
    });

    const grid = $('shard-grid');
    const cellOf = (e) => e.target.closest('.cell');
    grid.addEventListener('mouseover', (e) => {
      const c = cellOf(e);
      if (c) showDetail(Number(c.dataset.shard));
    });
    grid.addEventListener('focusin', (e) => {
      const c = cellOf(e);
      if (!c) return;
      const i = ui.cells.indexOf(c);
      if (i >= 0 && i !== ui.active) {
        ui.cells[ui.active].tabIndex = -1;
        ui.active = i;
        c.tabIndex = 0;
      }
      showDetail(Number(c.dataset.shard));
    });
    grid.addEventListener('click', (e) => {
      const c = cellOf(e);
      if (c) c.focus();
    });
    grid.addEventListener('keydown', (e) => {
      const i = ui.cells.indexOf(document.activeElement);
      if (i < 0) return;
      const last = ui.cells.length - 1;
      let j;
      switch (e.key) {
        case 'ArrowRight': j = i + 1; break;
        case 'ArrowLeft': j = i - 1; break;
        case 'ArrowDown': j = i + columns(); break;
        case 'ArrowUp': j = i - columns(); break;
        case 'Home': j = 0; break;
        case 'End': j = last; break;
        default: return;
      }
      e.preventDefault();
      focusCell(Math.max(0, Math.min(last, j)));
    });
  }

  wire();
  poll();
})();
