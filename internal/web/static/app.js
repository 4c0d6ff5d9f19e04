"use strict";
// The picluster dashboard: the history once, then the state as Server-Sent
// Events. Every event is the whole state but for the worker table, of which
// it carries the first page, so a reconnect needs no reload. The other pages
// are read from api/state?offset=&limit=, at most one request at a time.
(function () {
  const $ = (id) => document.getElementById(id);
  const PI = Math.PI;
  const Z95 = 1.959963984540054;
  const ns = [], est = [], lo = [], hi = [], piLine = [], errs = [], ses = [];
  let lastN = 0, estChart = null, errChart = null;
  // The page of the worker table shown: its first row, and the table's size
  // and page size as the last state said.
  let offset = 0, total = 0, limit = 100, last = null, loading = false;

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
    const alive = s.workers_by_status ? s.workers_by_status.alive : 0;
    $("workers").textContent = alive + " of " + s.workers + (s.anonymous_batches > 0 ?
      " + " + s.anonymous_batches + " anonymous batch" + (s.anonymous_batches > 1 ? "es" : "") : "");
    $("eta").textContent = s.target_se ? duration(s.eta_seconds) : "no target";
    $("rejected").textContent = s.rejected;
    $("ratio").textContent = s.checks.dispersion_ratio === null ? "—" : s.checks.dispersion_ratio.toFixed(2);
    $("chi2p").textContent = s.checks.chi2_p === null ? "—" : s.checks.chi2_p.toPrecision(3);
    $("stopped").textContent = s.stopped_by || "running";
    last = s;
    if (offset === 0) table(s); else fetchPage();
    if (s.pi !== null && push({ n: Number(s.n), pi: s.pi, stderr: s.stderr })) redraw();
  }
  // fetchPage reads the page at offset, unless a read is under way already.
  function fetchPage() {
    if (loading) return;
    loading = true;
    const want = offset;
    fetch("api/state?offset=" + want + "&limit=" + limit)
      .then((r) => { if (!r.ok) throw new Error("api/state: " + r.status); return r.text(); })
      .then((text) => { if (want === offset) table(parseState(text)); })
      .catch((err) => { $("conn").textContent = "error: " + err; })
      .finally(() => { loading = false; });
  }
  // table shows the page of the worker table that state s carries.
  function table(s) {
    const p = s.page || { offset: 0, limit: s.worker_table.length, total: s.worker_table.length };
    total = p.total; limit = p.limit;
    if (offset >= total && total > 0) { offset = Math.floor((total - 1) / limit) * limit; fetchPage(); return; }
    const end = p.offset + s.worker_table.length;
    $("rows").textContent = total === 0 ? "no workers" : "workers " + (p.offset + 1) + "–" + end + " of " + total;
    $("first").disabled = $("prev").disabled = p.offset === 0;
    $("next").disabled = $("last").disabled = end >= total;
    const rows = s.worker_table.slice();
    if (s.anonymous_batches > 0 && end >= total) { // seed-style reports name no worker: one row for them all
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
  }
  // go shows the page starting at row o.
  function go(o) {
    offset = Math.max(0, Math.min(o, total > 0 ? Math.floor((total - 1) / limit) * limit : 0));
    if (offset === 0 && last) table(last); else fetchPage();
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
    $("first").addEventListener("click", () => go(0));
    $("prev").addEventListener("click", () => go(offset - limit));
    $("next").addEventListener("click", () => go(offset + limit));
    $("last").addEventListener("click", () => go(total));
    window.addEventListener("resize", () => { estChart.setSize(size()); errChart.setSize(size()); });
  }
  // For tests and the curious: how many points the charts hold.
  window.picluster = { points: () => ns.length, renderPi: renderPi, parseState: parseState, go: go };
  start().catch((err) => { $("conn").textContent = "error: " + err; console.error(err); });
})();
