/* solbench report: renders the embedded results (element #solbench-data) into tables and SVG
 * rooflines. No network, no libraries. S is recomputed here from each shape's cost fields and the
 * selected ceilings, with the same formula as solbench.core.roofline:
 *   SOL = max(sum_path flops_path / peak_path, (bytes_read + bytes_written) / bandwidth)
 * and per-operator S is the production-weighted median, as in solbench.core.score.
 * State lives in the URL hash (run, hw, sort, regime, q, expand) so a view can be shared;
 * "#selftest" drives the page like a user would and writes the outcome to #selftest-result. */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('solbench-data').textContent);
  var SVGNS = 'http://www.w3.org/2000/svg';  // a namespace name, never fetched
  var PALETTE = ['#3b6fd8', '#e8710a', '#1a7f37', '#c62828', '#8e44ad', '#00838f', '#6d4c41', '#d81b60', '#5f6b7a', '#9e9d24'];
  var BASELINE_IMPLS = ['torch_compile', 'torch_eager'];

  var state = { run: D.baseline !== null && D.baseline !== undefined && D.runs.length > 1 ?
                  (D.baseline === D.runs.length - 1 ? 0 : D.runs.length - 1) : 0,
                hw: 'ach', sort: null, dir: -1, regime: '', q: '', expand: {} };

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] === null || attrs[k] === undefined) continue;
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'cls') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    return Number(x).toFixed(digits === undefined ? 2 : digits);
  }
  function fmtS(x) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    if (x >= 0.1) return x.toFixed(2);
    if (x >= 0.001) return x.toFixed(3);
    return x.toExponential(1);
  }
  function fmtUs(x) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    if (x >= 100) return Math.round(x).toLocaleString('en-US');
    if (x >= 1) return x.toFixed(2);
    return x.toFixed(3);
  }
  function fmtSI(x, unit) {
    if (x === null || x === undefined || !isFinite(x)) return '–';
    var p = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (var i = 0; i < p.length; i++) if (Math.abs(x) >= p[i][0]) return (x / p[i][0]).toPrecision(3) + ' ' + p[i][1] + unit;
    return x.toPrecision(3) + ' ' + unit;
  }
  function implColor(impl) { var i = D.impls.indexOf(impl); return PALETTE[(i < 0 ? 0 : i) % PALETTE.length]; }
  function run() { return D.runs[state.run]; }
  function reason(i) { return i === undefined || i === null ? '' : D.reasons[i]; }

  // ---------------------------------------------------------------- roofline and scores
  function hwFor(sel, r) {
    r = r || run();
    if (sel === 'ach') return r.ach ? { name: 'achievable on ' + r.device + ' (' + (r.ach.source || 'calibrated') + ')', peaks: r.ach.peaks, bw: r.ach.bw }
                                    : hwFor('ds', r);
    if (sel === 'ds') return r.ds ? { name: r.hw + ' datasheet', peaks: r.ds.peaks, bw: r.ds.bw } : null;
    var s = D.skus[sel];
    return s ? { name: sel + ' datasheet', peaks: s.peaks, bw: s.bw } : null;
  }
  function peak(hw, path) {
    var chain = D.fallback[path] || [path];
    for (var i = 0; i < chain.length; i++) { var v = hw.peaks[chain[i]]; if (v) return v; }
    return null;
  }
  function solUs(shape, hw) {
    if (!hw || !shape.cost || (shape.cost.r + shape.cost.w <= 0 && !totalFlops(shape))) return null;
    // Same rule as solbench.core.roofline: paths overlap (the slowest bounds the time), and a
    // path the cost declares serial adds to that max.
    var over = 0, serial = 0, sr = shape.cost.sr || [];
    for (var p in shape.cost.f) {
      if (!Object.prototype.hasOwnProperty.call(shape.cost.f, p) || !shape.cost.f[p]) continue;
      var pk = peak(hw, p);
      if (!pk) return null;
      if (sr.indexOf(p) >= 0) serial += shape.cost.f[p] / pk; else over = Math.max(over, shape.cost.f[p] / pk);
    }
    var compute = over + serial;
    var mem = (shape.cost.r + shape.cost.w) / hw.bw;
    return Math.max(compute, mem) * 1e6;
  }
  function totalFlops(shape) { var t = 0; if (shape.cost) for (var p in shape.cost.f) t += shape.cost.f[p] || 0; return t; }
  function totalBytes(shape) { return shape.cost ? shape.cost.r + shape.cost.w : 0; }
  function mainPath(shape) {
    var best = null, bv = 0;
    if (!shape.cost) return null;
    for (var p in shape.cost.f) if (shape.cost.f[p] > bv) { bv = shape.cost.f[p]; best = p; }
    return best;
  }
  function resOf(shape, impl, ri) {
    var pr = shape.runs[String(ri === undefined ? state.run : ri)];
    return pr ? pr.i[impl] || null : null;
  }
  function sOf(shape, impl, hw, ri) {
    var res = resOf(shape, impl, ri);
    if (!res || res.st !== 'ok' || !(res.t > 0)) return null;
    var sol = solUs(shape, hw);
    return sol === null ? null : sol / res.t;
  }
  // Same rule as solbench.core.score.weighted_median (ties at exactly half average the neighbours).
  function wmedian(vals, ws) {
    var pairs = [];
    for (var i = 0; i < vals.length; i++) if (vals[i] !== null && isFinite(vals[i]) && ws[i] > 0) pairs.push([vals[i], ws[i]]);
    if (!pairs.length) return null;
    pairs.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    var total = 0; pairs.forEach(function (p) { total += p[1]; });
    var acc = 0;
    for (var j = 0; j < pairs.length; j++) {
      acc += pairs[j][1];
      if (Math.abs(acc - total / 2) <= 1e-9 * Math.max(Math.abs(acc), Math.abs(total / 2))) return j + 1 < pairs.length ? (pairs[j][0] + pairs[j + 1][0]) / 2 : pairs[j][0];
      if (acc > total / 2) return pairs[j][0];
    }
    return pairs[pairs.length - 1][0];
  }
  function shapesOf(op, ri) {
    var key = String(ri === undefined ? state.run : ri);
    return op.shapes.map(function (i) { return D.shapes[i]; }).filter(function (s) { return s.runs[key]; });
  }
  function implsIn(ri) {
    var key = String(ri === undefined ? state.run : ri), seen = {};
    D.shapes.forEach(function (s) { var pr = s.runs[key]; if (pr) for (var k in pr.i) seen[k] = true; });
    return D.impls.filter(function (i) { return seen[i]; });
  }
  function opStats(op, hw) {
    var shapes = shapesOf(op), impls = implsIn(), s = {}, best = null;
    impls.forEach(function (impl) {
      var v = [], w = [];
      shapes.forEach(function (sh) { var x = sOf(sh, impl, hw); if (x !== null) { v.push(x); w.push(sh.w); } });
      s[impl] = wmedian(v, w);
      if (s[impl] !== null && (best === null || s[impl] > s[best])) best = impl;
    });
    // A deployed time is compared only with the contract it measured: ops whose published time
    // measured Atrex's contract (op.dep_contract) get no native deployed S.
    var dv = [], dw = [], av = [], aw = [], dsku = hwFor(D.deployed_sku);
    shapes.forEach(function (sh) {
      var d = sh.dep[D.deployed_sku];
      if (!(d && d.us > 0)) return;
      var sol = op.dep_contract === 'atrex' ? null : solUs(sh, dsku);
      if (sol !== null) { dv.push(sol / d.us); dw.push(sh.w); }
      if (sh.atx) { av.push(sh.atx / d.us); aw.push(sh.w); }
    });
    var regimes = {};
    shapes.forEach(function (sh) { if (sh.regime) regimes[sh.regime] = true; });
    var reg = ['C', 'M', 'I'].filter(function (r) { return regimes[r]; }).join('+');
    var fails = 0, skips = 0;
    shapes.forEach(function (sh) { var pr = sh.runs[String(state.run)]; for (var k in pr.i) { if (pr.i[k].st === 'fail') fails++; if (pr.i[k].st === 'skip') skips++; } });
    return { shapes: shapes.length, s: s, best: best, bestS: best ? s[best] : null, dep: wmedian(dv, dw), depA: wmedian(av, aw), regime: reg,
             fails: fails, skips: skips };
  }
  function importanceOf(op) {
    var imp = run().importance[op.name];
    return imp === undefined ? op.importance : imp;
  }
  function suite(hw) {
    var impls = implsIn(), out = {};
    impls.concat(['best']).forEach(function (impl) { out[impl] = { score: 0, coverage: 0 }; });
    D.ops.forEach(function (op) {
      if (!shapesOf(op).length) return;
      var st = opStats(op, hw), w = importanceOf(op) || 0;
      impls.forEach(function (impl) { if (st.s[impl] !== null && st.s[impl] !== undefined) { out[impl].score += w * st.s[impl]; out[impl].coverage += w; } });
      if (st.bestS !== null) { out.best.score += w * st.bestS; out.best.coverage += w; }
    });
    for (var k in out) out[k].normalized = out[k].coverage ? out[k].score / out[k].coverage : null;
    return out;
  }
  function delta() { return D.deltas[String(state.run)] || null; }
  function verdictSpan(d) {
    if (!d) return null;
    var cls = d.v === 'slower' ? 'v-slower' : d.v === 'faster' ? 'v-faster' : d.v === 'same' ? 'v-same' : 'v-fail';
    var txt = d.ratio !== null && d.ratio !== undefined ? '×' + d.ratio.toFixed(3) + ' ' + d.v : d.v;
    var band = d.band !== null && d.band !== undefined ? ' (noise ±' + ((Math.exp(d.band) - 1) * 100).toFixed(1) + '%)' : '';
    return el('span', { cls: cls, title: 'time ratio this run / baseline (> 1 is slower)' + band, text: txt });
  }

  // ---------------------------------------------------------------- summary
  function renderSummary() {
    var r = run(), box = document.getElementById('summary'), hw = hwFor(state.hw);
    box.textContent = '';
    if (r.smoke) box.appendChild(el('p', { cls: 'warn', text: 'This run is a smoke subset (' + r.device + ', timer ' + r.timer +
      '): a few small shapes per operator, meant to check that everything runs. Its times say nothing about GPU speed.' }));
    var env = r.env || {};
    var facts = [['device', r.device], ['datasheet SKU', r.hw], ['results', r.source + ' (' + r.date + ')'],
      ['records', r.records + ': ' + r.counts.ok + ' ok, ' + r.counts.fail + ' FAIL, ' + r.counts.skip + ' skipped'],
      ['timer', r.timer + (r.launch_floor_us ? '; launch floor ' + fmtUs(r.launch_floor_us) + ' µs' : '')],
      ['achievable ceilings', r.ach ? fmtSI(r.ach.bw, 'B/s') + ', ' + Object.keys(r.ach.peaks).map(function (p) { return p + ' ' + fmtSI(r.ach.peaks[p], 'FLOP/s'); }).join(', ') + ' (' + (r.ach.source || '') + ')' : '–'],
      ['versions', ['torch', 'triton', 'cuda', 'driver', 'python'].filter(function (k) { return env[k]; }).map(function (k) { return k + ' ' + env[k]; }).join(' · ')],
      ['commit', env.commit || '–']];
    if (env.clock_sm_mhz) facts.push(['clocks', 'SM ' + env.clock_sm_mhz + ' MHz (max ' + (env.clock_sm_max_mhz || '?') + '), mem ' + (env.clock_mem_mhz || '?') + ' MHz']);
    var ft = el('table', { cls: 'facts' });
    facts.forEach(function (f) { ft.appendChild(el('tr', null, [el('th', { text: f[0] }), el('td', { text: String(f[1]) })])); });
    var left = el('div', null, [el('h2', { text: 'Run' }), ft]);

    var sc = suite(hw), st = el('table', { cls: 'score-table', id: 'suite-score' });
    st.appendChild(el('tr', null, [el('th', { text: 'implementation' }), el('th', { text: 'Σ importance × S' }),
      el('th', { text: 'importance covered' }), el('th', { text: 'normalized' })]));
    Object.keys(sc).sort(function (a, b) { return (sc[b].score - sc[a].score); }).forEach(function (impl) {
      st.appendChild(el('tr', { 'data-impl': impl }, [el('td', { text: impl === 'best' ? 'best per operator' : impl }),
        el('td', { text: sc[impl].coverage ? fmt(sc[impl].score, 4) : '–', title: sc[impl].coverage ? '' : 'no correct timed result' }),
        el('td', { text: fmt(sc[impl].coverage, 4) }), el('td', { text: fmt(sc[impl].normalized, 3) })]));
    });
    var mid = el('div', null, [el('h2', { text: 'Production-weighted score' }),
      el('p', { cls: 'note', text: 'S per operator is the median over its correct shapes, weighted by each shape\'s production GPU time; ' +
        'the suite score sums importance (share of production GPU time) × S over the operators an implementation covers. Ceilings: ' + (hw ? hw.name : '–') + '.' }), st]);
    if (r.suite_floor && Object.keys(r.suite_floor).some(function (k) { return r.suite_floor[k].coverage; })) {
      var ft2 = el('table', { cls: 'score-table', id: 'suite-floor' });
      ft2.appendChild(el('tr', null, [el('th', { text: 'implementation' }), el('th', { text: 'Σ importance × S floor' }), el('th', { text: 'normalized' })]));
      Object.keys(r.suite_floor).sort(function (a, b) { return r.suite_floor[b].score - r.suite_floor[a].score; }).forEach(function (impl) {
        var f = r.suite_floor[impl];
        ft2.appendChild(el('tr', { 'data-impl': impl }, [el('td', { text: impl === 'best' ? 'best per operator' : impl }),
          el('td', { text: f.coverage ? fmt(f.score, 4) : '–' }), el('td', { text: fmt(f.normalized, 3) })]));
      });
      mid.appendChild(el('p', { cls: 'note', text: 'Against the cold floor: S floor = max(achievable SOL, cold floor ' +
        (r.cold_floor_us ? fmtUs(r.cold_floor_us) + ' µs' : '') + ') / time, what a decode-sized call can reach on this device; S stays the headline.' }));
      mid.appendChild(ft2);
    }

    var a = r.amdahl, ap = el('div', null, [el('h2', { text: 'End-to-end estimate (Amdahl)' })]);
    if (a && a.coverage > 0) {
      ap.appendChild(el('p', null, [el('strong', { text: (a.saved * 100).toFixed(1) + '% ' }),
        'of production GPU time saved if each operator\'s deployed kernel were replaced by the best correct implementation measured here ' +
        '(over operators holding ' + (a.coverage * 100).toFixed(1) + '% of production time).']));
      ap.appendChild(el('p', { cls: 'note', text: 'Basis: ' + a.basis }));
      var top = Object.keys(a.per_op).sort(function (x, y) { return a.per_op[y].saved - a.per_op[x].saved; }).slice(0, 6);
      var at = el('table', { cls: 'score-table' });
      at.appendChild(el('tr', null, [el('th', { text: 'operator' }), el('th', { text: 'saved' }), el('th', { text: 'S deployed (' + a.sku + ')' }), el('th', { text: 'S best here' })]));
      top.forEach(function (op) { var p = a.per_op[op]; at.appendChild(el('tr', null, [el('td', { text: op }), el('td', { text: (p.saved * 100).toFixed(2) + '%' }), el('td', { text: fmtS(p.s_deployed) }), el('td', { text: fmtS(p.s_best) })])); });
      ap.appendChild(at);
    } else {
      ap.appendChild(el('p', { cls: 'note', text: 'Not available: no shape has both a published deployed time on ' + (D.deployed_sku) + ' and a correct measurement in this run.' }));
    }
    var grid = el('div', { cls: 'summary-grid' }, [left, mid, ap]);
    box.appendChild(grid);
    var dl = delta();
    if (dl) {
      var tally = {};
      for (var op in dl.ops) for (var impl in dl.ops[op]) { var v = dl.ops[op][impl].v; tally[v] = (tally[v] || 0) + 1; }
      box.appendChild(el('p', { cls: 'note', id: 'delta-note' }, ['Compared with baseline run “' + D.runs[dl.base].label + '”: ' + dl.matched +
        ' matched records (operator × shape × implementation × hardware); operator × implementation verdicts: ' +
        Object.keys(tally).map(function (k) { return tally[k] + ' ' + k; }).join(', ') +
        '. A verdict needs the change to exceed the noise band from the records\' own p20/p80 spread.']));
    }
  }

  // ---------------------------------------------------------------- controls
  function renderControls() {
    var box = document.getElementById('controls');
    box.textContent = '';
    if (D.runs.length > 1) {
      var rs = el('select', { id: 'run-select' });
      D.runs.forEach(function (r, i) { rs.appendChild(el('option', { value: String(i), text: r.label + (i === D.baseline ? ' (baseline)' : '') })); });
      rs.value = String(state.run);
      rs.addEventListener('change', function () { state.run = Number(rs.value); renderAll(); });
      box.appendChild(el('label', null, ['run ', rs]));
    }
    var hs = el('select', { id: 'hw-select' });
    var r = run();
    hs.appendChild(el('option', { value: 'ach', text: 'measured: ' + r.device + ' (achievable)' }));
    if (r.ds && !D.skus[r.hw]) hs.appendChild(el('option', { value: 'ds', text: r.hw + ' (run\'s datasheet)' }));
    Object.keys(D.skus).forEach(function (k) { hs.appendChild(el('option', { value: k, text: k + ' datasheet' + (k === r.hw ? ' (measured SKU)' : '') })); });
    hs.value = state.hw;
    hs.addEventListener('change', function () { state.hw = hs.value; renderAll(); });
    box.appendChild(el('label', null, ['ceilings ', hs]));
    var rg = el('select', { id: 'regime-select' });
    [['', 'all regimes'], ['C', 'C: compute-bound'], ['M', 'M: memory-bound'], ['I', 'I: no arithmetic']].forEach(function (o) { rg.appendChild(el('option', { value: o[0], text: o[1] })); });
    rg.value = state.regime;
    rg.addEventListener('change', function () { state.regime = rg.value; renderTable(); saveHash(); });
    box.appendChild(el('label', null, ['regime ', rg]));
    var q = el('input', { id: 'filter-text', type: 'search', placeholder: 'filter operators…', size: '18' });
    q.value = state.q;
    q.addEventListener('input', function () { state.q = q.value; renderTable(); saveHash(); });
    box.appendChild(q);
    var ex = el('button', { id: 'expand-all', type: 'button', text: 'expand all' });
    ex.addEventListener('click', function () { D.ops.forEach(function (o) { state.expand[o.name] = true; }); renderTable(); saveHash(); });
    var co = el('button', { id: 'collapse-all', type: 'button', text: 'collapse all' });
    co.addEventListener('click', function () { state.expand = {}; renderTable(); saveHash(); });
    box.appendChild(ex); box.appendChild(co);
  }

  // ---------------------------------------------------------------- operator table
  function columns() {
    var cols = [{ key: 'name', label: 'operator', txt: true }, { key: 'dtype', label: 'dtype', txt: true },
      { key: 'importance', label: 'importance' }, { key: 'shapes', label: 'shapes' }, { key: 'regime', label: 'regime', txt: true }];
    implsIn().forEach(function (impl) { cols.push({ key: 's:' + impl, label: 'S ' + impl, impl: impl, wrap: true }); });
    cols.push({ key: 'best', label: 'best', txt: true }, { key: 'gap', label: 'gap to SOL' },
      { key: 'dep', label: 'deployed S (' + D.deployed_sku + ')', wrap: true },
      { key: 'depA', label: 'deployed S, Atrex SOL (' + D.deployed_sku + ')', wrap: true });
    if (delta()) cols.push({ key: 'delta', label: 'Δ vs baseline', txt: true });
    return cols;
  }
  function sortValue(op, st, key) {
    if (key === 'name') return op.name;
    if (key === 'dtype') return op.dtype || '';
    if (key === 'importance') return importanceOf(op);
    if (key === 'shapes') return st.shapes;
    if (key === 'regime') return st.regime;
    if (key === 'best') return st.best || '';
    if (key === 'gap') return st.bestS ? 1 / st.bestS : null;
    if (key === 'dep') return st.dep;
    if (key === 'depA') return st.depA;
    if (key === 'delta') { var h = headlineDelta(op); return h ? h.d.ratio : null; }
    if (key.indexOf('s:') === 0) return st.s[key.slice(2)];
    return null;
  }
  // The operator row shows the change that matters most for review: a new FAIL, else a
  // slowdown, else a speedup (largest first), else the best implementation's "same".
  var VERDICT_RANK = { 'now FAIL': 5, 'slower': 4, 'faster': 3, 'fixed': 2, 'same': 1 };
  function headlineDelta(op) {
    var d = delta(), o = d && d.ops[op.name];
    if (!o) return null;
    var best = null;
    Object.keys(o).forEach(function (impl) {
      var x = o[impl], rank = VERDICT_RANK[x.v] || 0, mag = x.ratio ? Math.abs(Math.log(x.ratio)) : 0;
      if (!best || rank > best.rank || (rank === best.rank && mag > best.mag)) best = { impl: impl, d: x, rank: rank, mag: mag };
    });
    return best;
  }
  function visibleOps(hw) {
    var q = state.q.trim().toLowerCase();
    var rows = D.ops.filter(function (op) { return shapesOf(op).length > 0; }).map(function (op) { return { op: op, st: opStats(op, hw) }; });
    rows = rows.filter(function (x) {
      if (state.regime && x.st.regime.split('+').indexOf(state.regime) < 0) return false;
      if (q && (x.op.name + ' ' + (x.op.dtype || '') + ' ' + ((x.op.origin || {}).symbol || '')).toLowerCase().indexOf(q) < 0) return false;
      return true;
    });
    var key = state.sort || 'importance', dir = state.sort ? state.dir : -1;
    rows.sort(function (a, b) {
      var va = sortValue(a.op, a.st, key), vb = sortValue(b.op, b.st, key);
      var na = va === null || va === undefined || va === '', nb = vb === null || vb === undefined || vb === '';
      if (na && nb) return 0; if (na) return 1; if (nb) return -1;  // missing values last either way
      if (typeof va === 'string') return dir * va.localeCompare(vb);
      return dir * (va - vb);
    });
    return rows;
  }
  function renderTable() {
    var hw = hwFor(state.hw), table = document.getElementById('op-table');
    var cols = columns(), thead = table.tHead, tbody = table.tBodies[0];
    thead.textContent = ''; tbody.textContent = '';
    var hr = el('tr');
    cols.forEach(function (c) {
      var th = el('th', { cls: (c.txt ? 'txt' : '') + (c.wrap ? ' wrap' : '') || null, 'data-col': c.key, scope: 'col', text: c.label,
        title: c.impl ? 'weighted-median S of ' + c.impl + ' on ' + (hw ? hw.name : '?') + ' (click to sort)' : 'click to sort' });
      if ((state.sort || 'importance') === c.key) th.setAttribute('aria-sort', (state.sort ? state.dir : -1) > 0 ? 'ascending' : 'descending');
      th.addEventListener('click', function () {
        if (state.sort === c.key) state.dir = -state.dir;
        else { state.sort = c.key; state.dir = c.txt ? 1 : -1; }
        renderTable(); saveHash();
      });
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    var rows = visibleOps(hw), d = delta();
    rows.forEach(function (x) {
      var op = x.op, st = x.st, tr = el('tr', { cls: 'op-row' + (state.expand[op.name] ? ' open' : ''), 'data-op': op.name, tabindex: '0' });
      cols.forEach(function (c) {
        var v = sortValue(op, st, c.key), td;
        if (c.key === 'name') td = el('td', { cls: 'txt name', text: op.name, title: op.origin ? (op.origin.framework + ': ' + op.origin.symbol) : '' });
        else if (c.key === 'importance') td = el('td', { text: v === null || v === undefined ? '–' : (v * 100).toFixed(2) + '%' });
        else if (c.key === 'gap') td = el('td', { text: v ? '×' + (v >= 100 ? Math.round(v) : v.toPrecision(3)) : '–', title: 'measured time of the best implementation over SOL' });
        else if (c.key === 'dep' || c.key === 'depA' || c.key.indexOf('s:') === 0) {
          td = el('td', { text: fmtS(v), cls: (v === null || v === undefined ? 'na' : '') + (c.impl && c.impl === st.best ? ' best-cell' : '') });
          if (c.impl) { td.setAttribute('data-impl', c.impl); if (v !== null && v !== undefined) td.setAttribute('data-s', String(v)); }
        } else if (c.key === 'delta') {
          td = el('td', { cls: 'txt' });
          var h = headlineDelta(op);
          if (h) {
            td.appendChild(el('span', { cls: 'note', text: h.impl + ' ' })); td.appendChild(verdictSpan(h.d));
            var n = Object.keys(d.ops[op.name]).length;
            if (n > 1) td.appendChild(el('span', { cls: 'note', text: ' (+' + (n - 1) + ')', title: (n - 1) + ' more implementation(s) compared: expand the operator' }));
          } else td.textContent = '–';
        } else td = el('td', { cls: c.txt ? 'txt' : null, text: v === null || v === undefined ? '–' : String(v) });
        tr.appendChild(td);
      });
      if (st.fails) tr.lastChild.title = st.fails + ' FAIL record(s)';
      function toggle() { if (state.expand[op.name]) delete state.expand[op.name]; else state.expand[op.name] = true; renderTable(); saveHash(); }
      tr.addEventListener('click', toggle);
      tr.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } });
      tbody.appendChild(tr);
      if (state.expand[op.name]) tbody.appendChild(detailRow(op, st, hw, cols.length));
    });
    document.getElementById('table-note').textContent = rows.length + ' of ' + D.ops.filter(function (o) { return shapesOf(o).length; }).length +
      ' operators. S against ' + (hw ? hw.name : '?') + '; gap to SOL = best measured time / SOL. Deployed S is the published deployed kernel\'s time on ' +
      D.deployed_sku + ' against the ' + D.deployed_sku + ' datasheet roofline, whatever the ceilings selected, because that is the only hardware it was measured on; ' +
      'the Atrex column puts the same time against Atrex-Bench\'s published-style SOL (roofline --compat atrex, docs/ROOFLINE.md).';
  }

  // ---------------------------------------------------------------- operator detail
  function detailRow(op, st, hw, ncols) {
    var td = el('td', { colspan: String(ncols) }), tr = el('tr', { cls: 'detail', 'data-op': op.name }, [td]);
    var shapes = shapesOf(op), impls = implsIn();
    var info = [el('h3', { text: op.name + (op.origin ? ' — ' + op.origin.framework + ': ' + op.origin.symbol : '') })];
    info.push(el('p', { cls: 'note', text: shapes.length + ' shapes · dtype ' + (op.dtype || '?') + ' · importance ' + ((importanceOf(op) || 0) * 100).toFixed(2) +
      '% of production GPU time' + (op.phase ? ' · ' + op.phase : '') + (st.fails ? ' · ' + st.fails + ' FAIL' : '') + (st.skips ? ' · ' + st.skips + ' skipped' : '') }));
    var chart = el('div', { cls: 'chart' });
    chart.appendChild(rooflineChart(shapes, impls, hw, op.name));
    td.appendChild(el('div', { cls: 'detail-head' }, [el('div', null, info), el('div', null, [chart])]));
    td.appendChild(el('div', { cls: 'table-wrap' }, [shapeTable(op, shapes, impls, hw)]));
    return tr;
  }
  function provText(sh) {
    var p = sh.prov || {}, parts = [];
    if (p.source_framework) parts.push(p.source_framework);
    if (p.tensor_parallel_size) parts.push('TP' + p.tensor_parallel_size);
    if (p.call_count) parts.push(p.call_count.toLocaleString('en-US') + ' calls');
    if (p.total_duration_us) parts.push(fmtUs(p.total_duration_us) + ' µs traced');
    for (var sku in sh.dep) {
      var dt = 'deployed ' + (sh.dep[sku].fw || '') + ' on ' + sku + ': ' + fmtUs(sh.dep[sku].us) + ' µs';
      if (sku === D.deployed_sku && sh.atx) dt += ' (S against Atrex SOL ' + fmtS(sh.atx / sh.dep[sku].us) + ')';
      parts.push(dt);
    }
    return parts.join(' · ');
  }
  function paramText(params) {
    return Object.keys(params).map(function (k) { var v = params[k]; return k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)); }).join(', ');
  }
  function sBar(s) {
    var bar = el('span', { cls: 'sbar' + (s > 1 ? ' over' : ''), title: s > 1 ? 'above the roofline: check the cost model or ceilings' : '' });
    bar.appendChild(el('span', { style: 'width:' + Math.max(0, Math.min(1, s || 0)) * 100 + '%' }));
    return bar;
  }
  function shapeTable(op, shapes, impls, hw) {
    var d = delta(), t = el('table', { cls: 'shapes', 'data-op': op.name });
    var head = ['impl', 'status', 'µs', 'p20–p80 µs', 'S', 'S floor', '× compile', '× eager', '× best peer'];
    if (d) head.push('Δ vs baseline');
    head.push('notes');
    t.appendChild(el('tr', null, head.map(function (h, i) { return el('th', { cls: i < 2 || h === 'S' || h === 'notes' || h === 'Δ vs baseline' ? 'txt' : null, text: h }); })));
    shapes.forEach(function (sh) {
      var sol = solUs(sh, hw), pr = sh.runs[String(state.run)];
      var cell = el('td', { colspan: String(head.length) }, [el('span', { cls: 'sid', text: '#' + sh.id }), sh.desc + ' ',
        el('div', { cls: 'prov', text: provText(sh) }),
        el('div', { cls: 'prov', text: paramText(sh.params) + ' · ' + fmtSI(totalFlops(sh), 'FLOP') + ', ' + fmtSI(totalBytes(sh), 'B') +
          ' · AI ' + (sh.ai === null || sh.ai === undefined ? '–' : Number(sh.ai).toPrecision(3)) + ' · regime ' + (sh.regime || '?') +
          ' · SOL ' + fmtUs(sol) + ' µs on ' + (hw ? hw.name : '?') }) ]);
      t.appendChild(el('tr', { cls: 'shape-row', 'data-shape': sh.id }, [cell]));
      impls.forEach(function (impl) {
        var res = pr.i[impl];
        if (!res) return;
        var s = res.st === 'ok' ? sOf(sh, impl, hw) : null, sp = res.sp || {};
        var stCls = res.st === 'ok' ? 'st st-ok' : res.st === 'fail' ? 'st st-fail' : 'st st-skip';
        var sCell = el('td', { cls: 'txt' });
        if (s !== null) { sCell.appendChild(sBar(s)); sCell.appendChild(document.createTextNode(fmtS(s))); sCell.setAttribute('data-s', String(s)); } else sCell.textContent = '–';
        var row = [el('td', { cls: 'txt' }, [el('i', { style: 'display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:5px;background:' + implColor(impl) }), impl]),
          el('td', { cls: 'txt' }, [el('span', { cls: stCls, text: res.st === 'fail' ? 'FAIL' : res.st })]),
          el('td', { text: fmtUs(res.t) }), el('td', { text: res.st === 'ok' && res.lo !== undefined ? fmtUs(res.lo) + '–' + fmtUs(res.hi) : '–' }),
          sCell, el('td', { text: res.sf ? fmtS(res.sf) : '–', title: 'max(achievable SOL, cold floor) / time' }),
          el('td', { text: sp.torch_compile ? fmt(sp.torch_compile) : '–' }), el('td', { text: sp.torch_eager ? fmt(sp.torch_eager) : '–' }),
          el('td', { text: sp.best_peer ? fmt(sp.best_peer) : '–' })];
        if (d) { var ds = d.shapes[op.name + '|' + sh.id], x = ds && ds[impl], dc = el('td', { cls: 'txt' }); if (x) { dc.appendChild(verdictSpan(x)); if (x.base) dc.appendChild(el('span', { cls: 'note', text: ' (was ' + fmtUs(x.base) + ' µs)' })); } else dc.textContent = '–'; row.push(dc); }
        var notes = [];
        if (res.why !== undefined) notes.push((res.st === 'fail' ? 'FAIL: ' : res.st === 'skip' ? 'skipped: ' : '') + reason(res.why));
        if (res.cs) notes.push('compile ' + fmt(res.cs, 1) + ' s (not in µs)');
        if (res.err !== undefined && res.st === 'ok') notes.push('max rel err ' + Number(res.err).toPrecision(2));
        row.push(el('td', { cls: 'reason', text: notes.join(' · ') }));
        t.appendChild(el('tr', { cls: 'impl-row impl-' + res.st, 'data-impl': impl, 'data-shape': sh.id }, row));
      });
    });
    return t;
  }

  // ---------------------------------------------------------------- SVG roofline
  function rooflineChart(shapes, impls, hw, title) {
    var pts = [], bwPts = [], paths = {};
    shapes.forEach(function (sh) {
      var fl = totalFlops(sh), by = totalBytes(sh);
      impls.forEach(function (impl) {
        var res = resOf(sh, impl);
        if (!res || res.st !== 'ok' || !(res.t > 0)) return;
        var lbl = (title ? '' : sh.op + ' ') + '#' + sh.id + ' ' + impl + ': ' + fmtUs(res.t) + ' µs, S ' + fmtS(sOf(sh, impl, hw));
        if (fl > 0 && by > 0) { pts.push({ x: fl / by, y: fl / (res.t * 1e-6), impl: impl, label: lbl }); paths[mainPath(sh)] = true; }
        else if (by > 0) bwPts.push({ x: by, y: by / (res.t * 1e-6), impl: impl, label: lbl });
      });
    });
    var wrap = el('div');
    if (!hw) { wrap.appendChild(el('p', { cls: 'note', text: 'no ceilings for this selection' })); return wrap; }
    if (pts.length) wrap.appendChild(drawRoofline(pts, hw, Object.keys(paths)));
    if (bwPts.length) wrap.appendChild(drawBandwidth(bwPts, hw));
    if (!pts.length && !bwPts.length) wrap.appendChild(el('p', { cls: 'note', text: 'no correct timed results to plot' }));
    var seen = {}, legend = el('div', { cls: 'legend' });
    pts.concat(bwPts).forEach(function (p) { seen[p.impl] = true; });
    D.impls.filter(function (i) { return seen[i]; }).forEach(function (i) { legend.appendChild(el('span', null, [el('i', { style: 'background:' + implColor(i) }), i])); });
    wrap.appendChild(legend);
    return wrap;
  }
  function logScale(lo, hi, a, b) { var l0 = Math.log10(lo), l1 = Math.log10(hi); return function (v) { return a + (Math.log10(v) - l0) / (l1 - l0) * (b - a); }; }
  function decades(lo, hi) { var out = []; for (var e = Math.ceil(Math.log10(lo) - 1e-9); e <= Math.floor(Math.log10(hi) + 1e-9); e++) out.push(Math.pow(10, e)); return out; }
  function frame(W, H, m, xs, ys, xt, yt, xlab, ylab, xunit, yunit) {
    var g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' });
    var grid = svg('g', { 'class': 'grid' }), axis = svg('g', { 'class': 'axis' });
    xt.forEach(function (v) { var x = xs(v); grid.appendChild(svg('line', { x1: x, x2: x, y1: m.t, y2: H - m.b })); axis.appendChild(svg('text', { x: x, y: H - m.b + 14, 'text-anchor': 'middle' }, fmtSI(v, xunit).replace(/ $/, ''))); });
    yt.forEach(function (v) { var y = ys(v); grid.appendChild(svg('line', { x1: m.l, x2: W - m.r, y1: y, y2: y })); axis.appendChild(svg('text', { x: m.l - 4, y: y + 4, 'text-anchor': 'end' }, fmtSI(v, yunit).replace(/ $/, ''))); });
    axis.appendChild(svg('path', { d: 'M' + m.l + ',' + m.t + 'V' + (H - m.b) + 'H' + (W - m.r), fill: 'none' }));
    axis.appendChild(svg('text', { x: (m.l + W - m.r) / 2, y: H - 4, 'text-anchor': 'middle' }, xlab));
    axis.appendChild(svg('text', { x: 12, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle', transform: 'rotate(-90 12 ' + (m.t + H - m.b) / 2 + ')' }, ylab));
    g.appendChild(grid); g.appendChild(axis);
    return g;
  }
  function drawRoofline(pts, hw, paths) {
    var W = 600, H = 330, m = { l: 100, r: 16, t: 14, b: 40 };
    var ceilings = [], main = paths.length ? paths : ['bf16_tc'];
    main.forEach(function (p) { var v = peak(hw, p); if (v && ceilings.every(function (c) { return c.v !== v; })) ceilings.push({ p: p, v: v }); });
    ceilings.sort(function (a, b) { return b.v - a.v; });
    var xmin = Infinity, xmax = 0, ymin = Infinity, ymax = 0;
    pts.forEach(function (p) { xmin = Math.min(xmin, p.x); xmax = Math.max(xmax, p.x); ymin = Math.min(ymin, p.y); ymax = Math.max(ymax, p.y); });
    ceilings.forEach(function (c) { var ridge = c.v / hw.bw; xmin = Math.min(xmin, ridge); xmax = Math.max(xmax, ridge); ymax = Math.max(ymax, c.v); });
    xmin /= 3; xmax *= 3; ymin = Math.min(ymin, hw.bw * xmin) / 3; ymax *= 2;
    var xs = logScale(xmin, xmax, m.l, W - m.r), ys = logScale(ymin, ymax, H - m.b, m.t);
    var g = frame(W, H, m, xs, ys, decades(xmin, xmax), decades(ymin, ymax), 'arithmetic intensity (FLOP/byte)', 'attained FLOP/s', '', 'FLOP/s');
    ceilings.forEach(function (c, i) {
      var ridge = c.v / hw.bw;
      g.appendChild(svg('path', { 'class': i === 0 ? 'roof' : 'roof2', d: 'M' + xs(xmin) + ',' + ys(hw.bw * xmin) + 'L' + xs(ridge) + ',' + ys(c.v) + 'L' + xs(xmax) + ',' + ys(c.v) }));
      g.appendChild(svg('text', { x: W - m.r - 2, y: ys(c.v) - 4, 'text-anchor': 'end' }, c.p + ' ' + fmtSI(c.v, 'FLOP/s')));
    });
    g.appendChild(svg('text', { x: xs(xmin) + 6, y: ys(hw.bw * xmin * 3) - 6 }, fmtSI(hw.bw, 'B/s')));
    pts.forEach(function (p) {
      var c = svg('circle', { cx: xs(p.x).toFixed(1), cy: ys(p.y).toFixed(1), r: 3.4, fill: implColor(p.impl), 'fill-opacity': 0.75, stroke: '#fff', 'stroke-width': 0.5 });
      c.appendChild(svg('title', {}, p.label));
      g.appendChild(c);
    });
    g.appendChild(svg('title', {}, 'Roofline: ceilings of ' + hw.name));
    return g;
  }
  function drawBandwidth(pts, hw) {
    var W = 600, H = 260, m = { l: 100, r: 16, t: 14, b: 40 };
    var xmin = Infinity, xmax = 0, ymax = hw.bw * 1.15;
    pts.forEach(function (p) { xmin = Math.min(xmin, p.x); xmax = Math.max(xmax, p.x); ymax = Math.max(ymax, p.y * 1.1); });
    xmin /= 3; xmax *= 3;
    var xs = logScale(xmin, xmax, m.l, W - m.r), ys = function (v) { return H - m.b - v / ymax * (H - m.b - m.t); };
    var yt = [], step = Math.pow(10, Math.floor(Math.log10(ymax / 4)));
    if (ymax / step > 10) step *= 2;
    for (var v = 0; v <= ymax; v += step) yt.push(v);
    var g = frame(W, H, m, xs, function (v) { return ys(v); }, decades(xmin, xmax), yt, 'bytes moved per call', 'attained bandwidth', 'B', 'B/s');
    g.appendChild(svg('path', { 'class': 'roof', d: 'M' + xs(xmin) + ',' + ys(hw.bw) + 'H' + xs(xmax) }));
    g.appendChild(svg('text', { x: W - m.r - 2, y: ys(hw.bw) - 4, 'text-anchor': 'end' }, 'bandwidth ' + fmtSI(hw.bw, 'B/s')));
    pts.forEach(function (p) {
      var c = svg('circle', { cx: xs(p.x).toFixed(1), cy: ys(p.y).toFixed(1), r: 3.4, fill: implColor(p.impl), 'fill-opacity': 0.75, stroke: '#fff', 'stroke-width': 0.5 });
      c.appendChild(svg('title', {}, p.label));
      g.appendChild(c);
    });
    g.appendChild(svg('title', {}, 'Operators without arithmetic: attained bandwidth against ' + hw.name));
    return g;
  }
  function renderSuiteChart() {
    var hw = hwFor(state.hw), box = document.getElementById('suite-chart');
    box.textContent = '';
    var shapes = D.shapes.filter(function (s) { return s.runs[String(state.run)]; });
    box.appendChild(rooflineChart(shapes, implsIn(), hw, null));
    document.getElementById('suite-note').textContent = 'Every correct timed record of the run: operators with arithmetic on the roofline (ceilings of ' +
      (hw ? hw.name : '?') + ', solid for the highest peak among the FLOP paths used, dashed for the others); structural operators (no FLOPs) ' +
      'by their attained bandwidth. Hover a point for its shape and time.';
  }

  // ---------------------------------------------------------------- state in the URL hash
  function loadHash() {
    var h = (location.hash || '').replace(/^#/, '');
    if (!h) return false;
    var selftest = false;
    h.split('&').forEach(function (kv) {
      var i = kv.indexOf('='), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1));
      if (k === 'selftest') selftest = true;
      else if (k === 'run' && D.runs[Number(v)]) state.run = Number(v);
      else if (k === 'hw' && (v === 'ach' || v === 'ds' || D.skus[v])) state.hw = v;
      else if (k === 'sort' && v) { var p = v.split(','); state.sort = p[0]; state.dir = p[1] === 'asc' ? 1 : -1; }
      else if (k === 'regime') state.regime = v;
      else if (k === 'q') state.q = v;
      else if (k === 'expand' && v) v.split(',').forEach(function (o) { state.expand[o] = true; });
    });
    return selftest;
  }
  function saveHash() {
    var parts = [];
    if (state.run !== 0) parts.push('run=' + state.run);
    if (state.hw !== 'ach') parts.push('hw=' + encodeURIComponent(state.hw));
    if (state.sort) parts.push('sort=' + encodeURIComponent(state.sort) + ',' + (state.dir > 0 ? 'asc' : 'desc'));
    if (state.regime) parts.push('regime=' + state.regime);
    if (state.q) parts.push('q=' + encodeURIComponent(state.q));
    var ex = Object.keys(state.expand);
    if (ex.length) parts.push('expand=' + ex.map(encodeURIComponent).join(','));
    try { history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname + location.search); } catch (e) { /* file:// in some browsers */ }
  }

  function renderAll() {
    if (state.hw === 'ds' && !run().ds) state.hw = 'ach';
    renderControls(); renderSummary(); renderSuiteChart(); renderTable(); saveHash();
  }

  // ---------------------------------------------------------------- self-test (browser test in CI)
  function opOrder() { return Array.prototype.map.call(document.querySelectorAll('#op-table tr.op-row'), function (r) { return r.getAttribute('data-op'); }); }
  function cellS(impl) {
    return Array.prototype.map.call(document.querySelectorAll('#op-table tr.op-row td[data-impl="' + impl + '"]'), function (td) { return td.getAttribute('data-s'); });
  }
  function selftest() {
    var out = { errors: [] };
    try {
      state = { run: state.run, hw: 'ach', sort: null, dir: -1, regime: '', q: '', expand: {} };
      renderAll();
      var ops = D.ops.filter(function (o) { return shapesOf(o).length; });
      out.ops_expected = ops.length;
      out.op_rows = document.querySelectorAll('#op-table tr.op-row').length;
      // Sort by the S column of the implementation with the most values, by clicking its header.
      var impls = implsIn(), counts = impls.map(function (i) { return cellS(i).filter(function (x) { return x !== null; }).length; });
      var impl = impls[counts.indexOf(Math.max.apply(null, counts))];
      out.sort_impl = impl;
      var before = opOrder();
      var th = document.querySelector('#op-table th[data-col="s:' + impl + '"]');
      th.click();
      if (state.dir > 0) document.querySelector('#op-table th[data-col="s:' + impl + '"]').click();
      var after = opOrder(), vals = cellS(impl).filter(function (x) { return x !== null; }).map(Number);
      out.sort_changed = before.join() !== after.join();
      out.sorted_desc = vals.every(function (v, i) { return i === 0 || vals[i - 1] >= v; });
      out.sort_header = document.querySelector('#op-table th[data-col="s:' + impl + '"]').getAttribute('aria-sort');
      // Hardware toggle through the select element, as a user would.
      var sel = document.getElementById('hw-select'), s0 = cellS(impl);
      var target = Object.keys(D.skus).filter(function (k) { return k !== run().hw; })[0];
      sel.value = target; sel.dispatchEvent(new Event('change'));
      var s1 = cellS(impl);
      out.hw_target = target;
      out.hw_changed = s0.some(function (v, i) { return v !== null && s1[i] !== null && Number(v) !== Number(s1[i]); });
      out.hw_select_value = document.getElementById('hw-select').value;
      // Expand the first operator by clicking its row.
      var first = document.querySelector('#op-table tr.op-row');
      var name = first.getAttribute('data-op');
      first.click();
      var opd = D.ops.filter(function (o) { return o.name === name; })[0];
      out.expanded_op = name;
      out.expanded_shapes_expected = shapesOf(opd).length;
      out.expanded_shape_rows = document.querySelectorAll('#op-table tr.detail table.shapes tr.shape-row').length;
      out.expanded_impl_rows = document.querySelectorAll('#op-table tr.detail table.shapes tr.impl-row').length;
      out.reasons_shown = document.querySelectorAll('#op-table tr.detail tr.impl-fail td.reason, #op-table tr.detail tr.impl-skip td.reason').length;
      // The filter narrows the table.
      var q = document.getElementById('filter-text');
      q.value = name; q.dispatchEvent(new Event('input'));
      out.filtered_rows = document.querySelectorAll('#op-table tr.op-row').length;
      q.value = ''; q.dispatchEvent(new Event('input'));
      // Recomputed SOL against the records' own sol_us / sol_achievable_us.
      var worst = 0, worstAch = 0, r = run();
      D.shapes.forEach(function (sh) {
        var pr = sh.runs[String(state.run)];
        if (!pr) return;
        var a = solUs(sh, hwFor('ach', r)), b = solUs(sh, r.ds ? { peaks: r.ds.peaks, bw: r.ds.bw } : null);
        if (pr.sol && b) worst = Math.max(worst, Math.abs(b - pr.sol) / pr.sol);
        if (pr.sola && a) worstAch = Math.max(worstAch, Math.abs(a - pr.sola) / pr.sola);
      });
      out.sol_max_rel_err = worst; out.sol_ach_max_rel_err = worstAch;
      var sc = suite(hwFor('ach')), mx = 0;
      for (var k in r.suite_ach) if (sc[k] && r.suite_ach[k].score) mx = Math.max(mx, Math.abs(sc[k].score - r.suite_ach[k].score) / r.suite_ach[k].score);
      out.suite_score_max_rel_err = mx;
      out.suite_scores_js = sc;
      out.svg_charts = document.querySelectorAll('svg').length;
      out.points = document.querySelectorAll('svg circle').length;
      out.resources = (performance.getEntriesByType ? performance.getEntriesByType('resource') : []).map(function (e) { return e.name; });
    } catch (e) {
      out.errors.push(String(e && e.stack || e));
    }
    var pre = document.getElementById('selftest-result');
    pre.textContent = JSON.stringify(out);
    pre.hidden = false;
    document.title = document.title + ' [selftest done]';
  }

  var errs = [];
  window.addEventListener('error', function (e) { errs.push(String(e.message)); });
  var doSelftest = loadHash();
  renderAll();
  document.getElementById('footer').textContent = 'Generated by solbench ' + D.version + ' on ' + D.generated + ' from ' +
    D.runs.map(function (r) { return r.source; }).filter(function (v, i, a) { return a.indexOf(v) === i; }).join(', ') +
    '. Self-contained: no network resources. Hardware datasheets: ' + Object.keys(D.skus).join(', ') + '.';
  if (doSelftest) selftest();
})();
