"use strict";
// The picluster dashboard: the history once, then the state as Server-Sent
// Events. Every event is the whole state, so a reconnect needs no reload.
(function () {
  const $ = (id) => document.getElementById(id);
  const PI = Math.PI;
  const Z95 = 1.959963984540054;
  const ns = [], est = [], lo = [], hi = [], piLine = [], errs = [], ses = [];
  let lastN = 0, estChart = null, errChart = null;

  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "—";
    if (Math.abs(x) >= 1e4) return x.toPrecision(digits || 4).replace("+", "");
    return String(Math.round(x));
  }
  function duration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 1) return "now";
    const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = Math.round(s % 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  // The estimate's digits as the collector splits them (collector.CertainDigits,
  // the rule the live view shares): the certain ones, then three more.
  function renderPi(el, d) {
    el.innerHTML = '<span class="certain"></span><span class="uncertain"></span>';
    el.firstChild.textContent = d && d.certain || "";
    el.lastChild.textContent = d && (d.certain || d.more) ? d.more : "—";
  }
  function push(p) {
    if (!(p.n > lastN) || p.pi === null) return false;
    lastN = p.n;
    ns.push(p.n); est.push(p.pi); lo.push(p.pi - Z95 * p.stderr); hi.push(p.pi + Z95 * p.stderr); piLine.push(PI);
    const e = Math.abs(p.pi - PI);
    errs.push(e > 0 ? e : null); ses.push(p.stderr > 0 ? p.stderr : null);
    return true;
  }
  function size() { return { width: Math.max(320, ($("chart-est").clientWidth || 560)), height: 280 }; }
  function charts() {
    const logX = { distr: 3, time: false, range: (u, lo, hi) => [lo, hi] };
    const sci = (u, v) => v.map((x) => (x === null ? "" : x.toExponential(0)));
    estChart = new uPlot(Object.assign(size(), {
      scales: { x: logX },
      axes: [{ label: "samples N", values: sci }, { label: "π̂", size: 90, values: (u, v) => v.map((x) => x.toFixed(7)) }],
      series: [{}, { label: "π̂", stroke: "#1f77b4", width: 2 },
        { label: "95 % low", stroke: "rgba(31,119,180,.35)" }, { label: "95 % high", stroke: "rgba(31,119,180,.35)" },
        { label: "π", stroke: "#d62728", dash: [6, 4] }],
      bands: [{ series: [3, 2], fill: "rgba(31,119,180,.15)" }],
    }), [ns, est, lo, hi, piLine], $("chart-est"));
    errChart = new uPlot(Object.assign(size(), {
      scales: { x: logX, y: { distr: 3 } },
      axes: [{ label: "samples N", values: sci }, { label: "|π̂ − π|", size: 70, values: sci }],
      series: [{}, { label: "|π̂ − π|", stroke: "#1f77b4", points: { show: true }, width: 0 },
        { label: "standard error", stroke: "#555", width: 2 }],
    }), [ns, errs, ses], $("chart-err"));
  }
  function redraw() {
    estChart.setData([ns, est, lo, hi, piLine]);
    errChart.setData([ns, errs, ses]);
  }
  function show(s) {
    $("conn").textContent = "live";
    document.title = "picluster " + (s.pi === null ? "" : s.pi.toFixed(8));
    $("channel").textContent = s.channel;
    $("n").textContent = s.n; // a string: exact at any size
    $("n").dataset.value = s.n;
    $("rate").textContent = fmt(s.samples_per_s, 3);
    if (s.pi !== null) {
      renderPi($("pi"), s.pi_digits);
      $("pi").dataset.value = String(s.pi);
      $("se").textContent = s.stderr === null ? "—" : s.stderr.toPrecision(3);
      $("ci").textContent = s.ci95[0] === null || s.ci95[1] === null ? "—" :
        "[" + s.ci95[0].toFixed(10) + ", " + s.ci95[1].toFixed(10) + "]";
    }
    const st = s.stratified;
    $("estimator").textContent = st ? "stratified K=" + st.cells + ", " + st.batches + " batches (t), " +
      (st.gain === null ? "—" : st.gain.toFixed(0) + "× below MC") : (s.estimator || "mc");
    $("slope").textContent = s.slope === null || s.slope === undefined ? "—" : s.slope.toFixed(2);
    if (s.bias !== null && s.bias !== undefined) {
      $("bias").textContent = "+" + s.bias.toPrecision(2);
    }
    const alive = s.worker_table.filter((w) => w.status === "alive").length;
    $("workers").textContent = alive + " of " + s.workers + (s.anonymous_batches > 0 ?
      " + " + s.anonymous_batches + " anonymous batch" + (s.anonymous_batches > 1 ? "es" : "") : "");
    $("eta").textContent = s.target_se ? duration(s.eta_seconds) : "no target";
    $("rejected").textContent = s.rejected;
    $("ratio").textContent = s.checks.dispersion_ratio === null ? "—" : s.checks.dispersion_ratio.toFixed(2);
    $("chi2p").textContent = s.checks.chi2_p === null ? "—" : s.checks.chi2_p.toPrecision(3);
    $("stopped").textContent = s.stopped_by || "running";
    const rows = s.worker_table.slice();
    if (s.anonymous_batches > 0) { // seed-style reports name no worker: one row for them all
      rows.push({ id: "(anonymous)", status: s.anonymous_batches + " batch" + (s.anonymous_batches > 1 ? "es" : ""),
        n: s.anonymous_n, pi: null, z: null, samples_per_s: null, kernel: "", flagged: false });
    }
    const body = $("workers-table").tBodies[0];
    body.replaceChildren(...rows.map((w) => {
      const tr = document.createElement("tr");
      if (w.flagged || w.status === "quarantined") tr.className = "flagged";
      for (const v of [w.id, w.status, fmt(Number(w.n), 4), w.pi === null ? "—" : w.pi.toFixed(8),
        w.z === null ? "—" : w.z.toFixed(2), fmt(w.samples_per_s, 3), w.kernel || "", w.why || ""]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      return tr;
    }));
    if (s.pi !== null && push({ n: Number(s.n), pi: s.pi, stderr: s.stderr })) redraw();
  }
  // parseState reads the state's JSON with its sample and hit counts, which
  // pass 2⁵³ (and 2⁶⁴), as decimal strings, so they are shown exactly: a
  // JavaScript number would round them. In valid JSON a quote inside a
  // string is escaped, so the pattern matches only these keys.
  function parseState(text) {
    return JSON.parse(text.replace(/"(n|hits|anonymous_n)":(\d+)/g, '"$1":"$2"'));
  }
  async function start() {
    charts();
    const hist = await (await fetch("api/history")).json();
    for (const p of hist || []) push(p);
    redraw();
    const src = new EventSource("api/events");
    src.addEventListener("state", (e) => show(parseState(e.data)));
    src.addEventListener("fault", (e) => { $("conn").textContent = "server: " + JSON.parse(e.data); });
    src.onopen = () => { $("conn").textContent = "live"; };
    src.onerror = () => { $("conn").textContent = "reconnecting…"; };
    window.addEventListener("resize", () => { estChart.setSize(size()); errChart.setSize(size()); });
  }
  // For tests and the curious: how many points the charts hold.
  window.picluster = { points: () => ns.length, renderPi: renderPi, parseState: parseState };
  start().catch((err) => { $("conn").textContent = "error: " + err; console.error(err); });
})();
