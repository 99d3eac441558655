// Live numbers for the dashboard: polls /lamina/ui/api/stats every 2 s, turns counters into per-second rates for the
// [data-rate] cells and draws the uPlot charts ([data-chart] elements) from the last five minutes of samples.
(function () {
  "use strict";
  const prefix = "/lamina/ui";
  const KEEP = 150;  // samples kept (5 minutes at 2 s)
  let previous = null;
  const rates = {};   // "fn:NAME:invocations" -> per second
  const charts = [];

  function total(stats, name, field) {
    if (name) { const f = stats.functions[name]; return f ? f[field] : 0; }
    return Object.values(stats.functions).reduce((sum, f) => sum + f[field], 0);
  }

  function applyRates() {
    document.querySelectorAll("[data-rate]").forEach((el) => {
      const r = rates[el.dataset.rate];
      el.textContent = r === undefined ? "–" : r.toFixed(r < 10 ? 2 : 0);
    });
  }

  function makeChart(el) {
    const kind = el.dataset.chart;
    const series = kind === "rates"
      ? [{}, { label: "invocations/s", stroke: "#3457d5", width: 2, fill: "rgba(52,87,213,0.08)" },
             { label: "errors/s", stroke: "#d23b3b", width: 2 }]
      : [{}, { label: "mean duration ms", stroke: "#e0892b", width: 2, fill: "rgba(224,137,43,0.08)" }];
    const data = series.map(() => []);
    const plot = new uPlot({ width: Math.max(300, el.clientWidth), height: 200, series: series,
                             scales: { x: { time: true } }, axes: [{}, { size: 50 }], legend: { live: false } },
                           data, el);
    charts.push({ el, kind, name: el.dataset.function || "", data, plot });
  }

  function addPoint(chart, t, values) {
    chart.data[0].push(t);
    values.forEach((v, i) => chart.data[i + 1].push(v));
    if (chart.data[0].length > KEEP) chart.data.forEach((s) => s.shift());
    chart.plot.setData(chart.data);
  }

  async function poll() {
    let stats;
    try {
      const resp = await fetch(prefix + "/api/stats", { cache: "no-store" });
      stats = await resp.json();
    } catch (e) { return; }
    if (previous) {
      const dt = Math.max(0.001, stats.time - previous.time);
      for (const [name, f] of Object.entries(stats.functions)) {
        const p = previous.functions[name];
        if (p) rates["fn:" + name + ":invocations"] = Math.max(0, f.invocations - p.invocations) / dt;
      }
      for (const [id, u] of Object.entries(stats.udp)) {
        const p = previous.udp[id];
        if (!p) continue;
        rates["udp:" + id + ":packets_in"] = Math.max(0, u.packets_in - p.packets_in) / dt;
        rates["udp:" + id + ":packets_out"] = Math.max(0, u.packets_out - p.packets_out) / dt;
      }
      for (const c of charts) {
        const dInv = Math.max(0, total(stats, c.name, "invocations") - total(previous, c.name, "invocations"));
        if (c.kind === "rates") {
          const dErr = Math.max(0, total(stats, c.name, "errors") - total(previous, c.name, "errors"));
          addPoint(c, stats.time, [dInv / dt, dErr / dt]);
        } else {
          const dMs = total(stats, c.name, "duration_ms") - total(previous, c.name, "duration_ms");
          addPoint(c, stats.time, [dInv ? dMs / dInv : null]);
        }
      }
      applyRates();
    }
    previous = stats;
  }

  document.querySelectorAll("[data-chart]").forEach(makeChart);
  document.body.addEventListener("htmx:afterSwap", applyRates);
  window.addEventListener("resize", () => charts.forEach((c) => c.plot.setSize({ width: c.el.clientWidth, height: 200 })));
  poll();
  setInterval(poll, 2000);
})();
