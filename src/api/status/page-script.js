// The status page's script (src/api/status/page-script.js, served as /status/page.js; no build step): polls
// /status/data, swaps in the server-rendered sections and feeds the uPlot
// charts. window.statusPage exposes the charts and a refresh count, so a
// headless browser can tell when real data was drawn.
(function () {
  'use strict';
  var body = document.body;
  var sampleMs = Number(body.getAttribute('data-sample-ms')) || 5000;
  var KEY = 'shopstream-status-token';
  var COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2'];
  var state = { charts: {}, updates: 0, lastError: null };
  window.statusPage = state;

  // A token in the fragment (#token=…) never reaches a server or its logs; it is moved to session storage.
  var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  var form = document.getElementById('signin');
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById('token').value);
    form.style.display = 'none';
    refresh();
  });

  function bytes(v) {
    if (v == null) return '';
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + ' ' + u[i];
  }
  function num(v) { return v == null ? '' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(v % 1 ? 2 : 0); }

  function draw(t, spec) {
    var el = document.getElementById('chart-' + spec.id);
    if (!el) return;
    var fmt = spec.unit === 'bytes' ? bytes : num;
    var data = [t].concat(spec.series.map(function (s) { return s.values; }));
    var shape = spec.series.map(function (s) { return s.label; }).join('|');
    var c = state.charts[spec.id];
    if (c && c.shape === shape) { c.plot.setData(data); return; }
    if (c) c.plot.destroy();
    var opts = {
      title: spec.title + ' (' + spec.unit + ')',
      width: Math.max(300, el.clientWidth - 16), height: 220,
      series: [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, value: function (_u, v) { return fmt(v); } };
      })),
      axes: [{}, { size: 70, values: function (_u, vs) { return vs.map(fmt); } }],
      scales: { y: { range: function (_u, lo, hi) { return [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1]; } } },
    };
    state.charts[spec.id] = { shape: shape, plot: new uPlot(opts, data, el) };
  }

  function refresh() {
    var token = sessionStorage.getItem(KEY);
    var headers = token ? { authorization: 'Bearer ' + token } : {};
    return fetch('/status/data', { headers: headers, cache: 'no-store' }).then(function (res) {
      if (res.status === 401) {
        form.style.display = 'block';
        state.lastError = 'unauthorized';
        return;
      }
      if (!res.ok) throw new Error('/status/data answered ' + res.status);
      return res.json().then(function (d) {
        Object.keys(d.sections).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) el.innerHTML = d.sections[id];
        });
        d.charts.charts.forEach(function (spec) { draw(d.charts.t, spec); });
        state.lastError = null;
        state.updates++;
      });
    }).catch(function (err) { state.lastError = String(err); });
  }

  function loop() { refresh().then(function () { setTimeout(loop, sampleMs); }); }
  loop();
})();
