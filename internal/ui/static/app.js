// keyhole dashboard scripts. Loaded from 'self' only (the CSP forbids
// inline scripts), and under Trusted Types with no policy: nothing here
// ever turns a string into HTML. Every value from the API reaches the page
// through textContent or a created element, so logged payloads stay inert.
'use strict';

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---- confirmations for destructive forms ----
  document.addEventListener('submit', function (ev) {
    const f = ev.target;
    if (f instanceof HTMLFormElement && f.dataset.confirm && !window.confirm(f.dataset.confirm)) {
      ev.preventDefault();
    }
  });

  // ---- copy buttons ----
  document.addEventListener('click', function (ev) {
    const b = ev.target instanceof Element ? ev.target.closest('[data-copy], [data-copy-next]') : null;
    if (!b) return;
    let src = null;
    if (b.dataset.copy) {
      src = document.getElementById(b.dataset.copy);
    } else {
      const box = b.closest('.body-meta');
      src = box ? box.nextElementSibling : null;
    }
    if (!src) return;
    const text = src.textContent;
    const done = function () {
      const old = b.textContent;
      b.textContent = 'Copied';
      setTimeout(function () { b.textContent = old; }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(src); });
    } else {
      selectText(src);
    }
  });

  function selectText(node) {
    const r = document.createRange();
    r.selectNodeContents(node);
    const s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }

  // ---- request log: whole rows open the record ----
  document.addEventListener('click', function (ev) {
    if (!(ev.target instanceof Element) || ev.target.closest('a, button, input, select, textarea')) return;
    const tr = ev.target.closest('table.log tbody tr');
    if (!tr) return;
    const a = tr.querySelector('a[href]');
    if (a && !window.getSelection().toString()) window.location.assign(a.getAttribute('href'));
  });

  // ---- request log: live tail (server-sent events) ----
  function fmtTime(s) {
    if (typeof s !== 'string') return '';
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(s);
    return m ? m[1] + ' ' + m[2] + (m[3] || '.000').padEnd(4, '0') + ' UTC' : s;
  }
  function fmtMs(v) {
    if (typeof v !== 'number') return '—';
    if (v >= 10000) return (v / 1000).toFixed(1) + ' s';
    if (v >= 100) return v.toFixed(0) + ' ms';
    if (v >= 1) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  function statusClass(s) {
    if (typeof s !== 'number' || s === 0) return 'st-none';
    if (s >= 500) return 'st-5xx';
    if (s >= 400) return 'st-4xx';
    if (s >= 300) return 'st-3xx';
    return 'st-2xx';
  }
  function decisionClass(d) {
    return (d === 'allow' || d === 'deny' || d === 'error') ? 'dec-' + d : 'dec-other';
  }
  function logRow(r) {
    const tr = el('tr');
    tr.dataset.id = String(r.id || '');
    const t = el('td', 'time');
    const a = el('a', null, fmtTime(r.time));
    a.setAttribute('href', '/logs/' + encodeURIComponent(String(r.id || '')));
    t.appendChild(a);
    tr.appendChild(t);
    const agent = el('td');
    if (r.agent) agent.textContent = String(r.agent); else agent.appendChild(el('span', 'muted', '—'));
    tr.appendChild(agent);
    tr.appendChild(el('td', null, r.proxy));
    tr.appendChild(el('td', 'method', r.method));
    const p = el('td', 'path', r.path);
    p.title = String(r.path || '');
    tr.appendChild(p);
    const st = el('td');
    st.appendChild(el('span', 'status ' + statusClass(r.status), r.incomplete ? '…' : (r.status ? r.status : '—')));
    tr.appendChild(st);
    const d = el('td');
    d.appendChild(el('span', 'badge ' + decisionClass(r.decision), r.decision));
    d.appendChild(document.createTextNode(' '));
    d.appendChild(el('span', 'reason', r.reason));
    tr.appendChild(d);
    tr.appendChild(el('td', 'num', fmtMs(r.latency_ms)));
    return tr;
  }

  const live = document.getElementById('live');
  const rows = document.getElementById('log-rows');
  if (live && rows) {
    live.hidden = false;
    let es = null;
    const byId = new Map();
    const maxRows = 500;
    const add = function (ev, update) {
      let r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      if (!r || typeof r !== 'object') return;
      const tr = logRow(r);
      const old = byId.get(tr.dataset.id) || rows.querySelector('tr[data-id="' + CSS.escape(tr.dataset.id) + '"]');
      if (old && old.parentNode === rows) {
        rows.replaceChild(tr, old);
      } else if (update && old) {
        return;
      } else {
        tr.classList.add('fresh');
        rows.insertBefore(tr, rows.firstChild);
      }
      byId.set(tr.dataset.id, tr);
      const empty = document.getElementById('log-empty');
      if (empty) empty.hidden = true;
      while (rows.children.length > maxRows) {
        const last = rows.lastElementChild;
        byId.delete(last.dataset.id);
        rows.removeChild(last);
      }
    };
    const stop = function () {
      if (es) { es.close(); es = null; }
      delete live.dataset.state;
      live.setAttribute('aria-pressed', 'false');
      live.textContent = 'Live tail';
    };
    const start = function () {
      es = new EventSource(live.dataset.stream);
      es.onmessage = function (ev) { add(ev, false); };
      es.addEventListener('update', function (ev) { add(ev, true); });
      es.onerror = function () { live.textContent = 'Live tail (reconnecting…)'; };
      es.onopen = function () { live.textContent = 'Live tail: on'; live.dataset.state = 'open'; };
      live.setAttribute('aria-pressed', 'true');
      live.textContent = 'Live tail: on';
    };
    live.addEventListener('click', function () { if (es) stop(); else start(); });
    if (window.location.hash === '#live') start();
  }

  // ---- proxy editor: the auth type's fields ----
  const authSel = document.querySelector('[data-auth-type]');
  if (authSel) {
    const sync = function () {
      document.querySelectorAll('[data-auth]').forEach(function (n) {
        n.hidden = n.dataset.auth.split(' ').indexOf(authSel.value) < 0;
      });
    };
    authSel.addEventListener('change', sync);
    sync();
  }

  function debounce(fn, ms) {
    let t = 0;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  function show(out, ok, msg) {
    out.textContent = msg;
    out.classList.toggle('ok', ok);
    out.classList.toggle('bad', !ok);
  }

  // ---- proxy editor: validation as you type (the admin API's) ----
  const pform = document.getElementById('proxy-form');
  if (pform && pform.dataset.validate) {
    const out = document.getElementById('proxy-validation');
    let seq = 0;
    const check = debounce(function () {
      const mine = ++seq;
      fetch(pform.dataset.validate, {method: 'POST', credentials: 'same-origin', body: new URLSearchParams(new FormData(pform))})
        .then(function (r) { return r.json(); })
        .then(function (res) {
          if (mine !== seq) return;
          if (res && res.ok) show(out, true, '✓ Valid: the gateway would accept this proxy.');
          else show(out, false, (res && res.error) ? String(res.error) : 'Not valid.');
        })
        .catch(function () { if (mine === seq) show(out, false, 'Could not check right now.'); });
    }, 400);
    pform.addEventListener('input', check);
    pform.addEventListener('change', check);
  }

  function split(s, upper) {
    return String(s || '').split(/[\s,]+/).filter(Boolean).map(function (x) { return upper ? x.toUpperCase() : x; });
  }
  function api(url, body) {
    return fetch(url, {method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', 'X-Keyhole-CSRF': csrf}, body: JSON.stringify(body)})
      .then(function (r) {
        return r.json().then(function (j) { return {ok: r.ok, body: j}; }, function () { return {ok: false, body: null}; });
      });
  }
  function apiError(res) {
    return res.body && res.body.error && res.body.error.message ? String(res.body.error.message) : 'Not valid.';
  }

  // ---- add-rule form: validation as you type ----
  const rform = document.getElementById('rule-form');
  if (rform && rform.dataset.validateRule) {
    const out = document.getElementById('rule-validation');
    let seq = 0;
    const check = debounce(function () {
      const f = new FormData(rform);
      if (!String(f.get('name') || '').trim()) { show(out, false, 'Give the rule a name.'); return; }
      const rule = {name: String(f.get('name')).trim(), effect: f.get('effect'), mode: f.get('mode'),
        methods: split(f.get('methods'), true), paths: split(f.get('paths'), false), agents: split(f.get('agents'), false),
        when: String(f.get('when') || '').trim(), rate_limit: String(f.get('rate_limit') || '').trim()};
      const mine = ++seq;
      api(rform.dataset.validateRule, rule).then(function (res) {
        if (mine !== seq) return;
        if (res.ok) show(out, true, '✓ Valid rule.');
        else show(out, false, apiError(res));
      }, function () { if (mine === seq) show(out, false, 'Could not check right now.'); });
    }, 350);
    rform.addEventListener('input', check);
    rform.addEventListener('change', check);
  }

  // ---- try a request (POST /api/v1/proxies/{name}/rules/test) ----
  const tform = document.getElementById('try-form');
  if (tform) {
    tform.addEventListener('submit', function (ev) {
      ev.preventDefault();
      const f = new FormData(tform);
      const headers = {};
      String(f.get('headers') || '').split('\n').forEach(function (line) {
        const i = line.indexOf(':');
        if (i > 0) {
          const k = line.slice(0, i).trim();
          (headers[k] = headers[k] || []).push(line.slice(i + 1).trim());
        }
      });
      const req = {agent: f.get('agent') || '', method: String(f.get('method') || 'GET').trim().toUpperCase(),
        path: String(f.get('path') || '/').trim(), headers: headers};
      const body = String(f.get('body') || '');
      if (body) req.body = body;
      const box = document.getElementById('try-result');
      const dec = document.getElementById('try-decision');
      const reason = document.getElementById('try-reason');
      const msg = document.getElementById('try-message');
      const tbody = document.getElementById('try-rules');
      api(tform.dataset.test, req).then(function (res) {
        box.hidden = false;
        tbody.replaceChildren();
        if (!res.ok) {
          dec.textContent = 'cannot evaluate';
          dec.className = 'badge dec-error';
          reason.textContent = '';
          msg.textContent = apiError(res);
          return;
        }
        const r = res.body;
        dec.textContent = r.allow ? 'would forward' : 'would refuse' + (r.status ? ' (' + r.status + ')' : '');
        dec.className = 'badge ' + (r.allow ? 'dec-allow' : 'dec-deny');
        reason.textContent = String(r.reason || '') + (r.rule ? ' · rule ' + r.rule : '');
        msg.textContent = r.message ? String(r.message) : '';
        (r.rules || []).concat(r.token_rules || []).forEach(function (x) {
          const tr = el('tr');
          tr.appendChild(el('th', null, x.name));
          tr.appendChild(el('td', null, x.effect + (x.mode === 'report' ? ' (report)' : '')));
          tr.appendChild(el('td', null, x.result));
          tr.appendChild(el('td', null, x.why));
          tbody.appendChild(tr);
        });
      }, function () {
        box.hidden = false;
        msg.textContent = 'Could not evaluate right now.';
      });
    });
  }
})();
