// Small line charts in SVG, no library. Hone.metricCharts(element, rows) draws one chart per
// numeric key of the rows; Hone.runCharts(lead, more, rows, plan) draws a run's curves into the
// figures its page rendered. chart.push(row) appends a row and redraws (live run curves).
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f5f8b", "#b3541e", "#2f7d4f", "#7a4ca0", "#a4262c", "#5c5c57"];

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.01 || a >= 10000)) return v.toExponential(1);
    return String(Math.round(v * 1000) / 1000);
  }

  // Draws (or redraws) the box's chart: its svg is replaced, anything else in the box (a
  // caption) stays. `title` is written inside the chart unless the box has a caption. The box's
  // data-points says how many points the line has.
  function draw(box, title, xs, ys) {
    const W = 320, H = 170, L = 48, R = 10, T = 22, B = 24;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    if (!box.querySelector("figcaption")) svg.appendChild(el("text", { x: L, y: 14, class: "chart-title" }, title));
    const old = box.querySelector("svg");
    const put = () => (old ? old.replaceWith(svg) : box.appendChild(svg));
    const pts = xs.map((x, i) => [x, ys[i]]).filter(([, y]) => typeof y === "number" && isFinite(y));
    box.dataset.points = pts.length;
    if (pts.length === 0) {
      svg.appendChild(el("text", { x: L, y: H / 2, class: "chart-empty" }, "no data yet"));
      put();
      return;
    }
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
    svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "chart-axis" }));
    svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "chart-axis" }));
    for (const y of [y0, (y0 + y1) / 2, y1]) {
      svg.appendChild(el("text", { x: L - 4, y: sy(y) + 4, class: "chart-tick", "text-anchor": "end" }, fmt(y)));
    }
    svg.appendChild(el("text", { x: L, y: H - 6, class: "chart-tick" }, fmt(x0)));
    svg.appendChild(el("text", { x: W - R, y: H - 6, class: "chart-tick", "text-anchor": "end" }, fmt(x1)));
    const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    svg.appendChild(el("path", { d, class: "chart-line" }));
    if (pts.length < 30) for (const [x, y] of pts) svg.appendChild(el("circle", { cx: sx(x), cy: sy(y), r: 2.5, class: "chart-dot" }));
    put();
  }

  // One small chart per numeric key of the rows, keyed on `xKey`.
  function metricCharts(container, rows, { xKey = "step", keys = null } = {}) {
    const state = { rows: rows.slice(), boxes: {} };
    function names() {
      if (keys) return keys;
      const seen = new Set();
      for (const r of state.rows) for (const [k, v] of Object.entries(r)) if (k !== xKey && typeof v === "number") seen.add(k);
      return [...seen].sort();
    }
    function render() {
      for (const [i, name] of names().entries()) {
        if (!state.boxes[name]) {
          const box = document.createElement("figure");
          box.className = "chart";
          box.style.setProperty("--chart-color", COLORS[i % COLORS.length]);
          container.appendChild(box);
          state.boxes[name] = box;
        }
        draw(state.boxes[name], name, state.rows.map((r) => r[xKey]), state.rows.map((r) => r[name]));
      }
    }
    render();
    return { push(row) { state.rows.push(row); render(); } };
  }

  function figure(name, title) {
    const box = document.createElement("figure");
    box.className = "chart";
    box.dataset.metric = name;
    const caption = document.createElement("figcaption");
    const code = document.createElement("code");
    code.textContent = name;
    if (title) caption.append(`${title} `);
    caption.append(code);
    box.appendChild(caption);
    return box;
  }

  // A run's curves. The page rendered a figure (data-metric) for each leading curve of its kind
  // in `lead` and for every other metric reported so far in `more` (inside a <details>). A metric
  // first reported live gets a figure of its own: in `lead`, at its place, when the plan lists
  // it there (held-out accuracy at the end of training), else in `more`, unless the plan calls
  // it bookkeeping (step, episode, elapsed_seconds...), which is never plotted.
  function runCharts(lead, more, rows, plan, { xKey = "step" } = {}) {
    const state = { rows: rows.slice(), boxes: {} };
    const hidden = new Set([xKey, ...plan.hidden]);
    const details = more.closest("details");
    for (const box of [...lead.children, ...more.children]) state.boxes[box.dataset.metric] = box;

    function place(name) {
      const rank = plan.lead.indexOf(name);
      const box = figure(name, plan.titles[name]);
      if (rank >= 0) {
        const next = [...lead.children].find((b) => plan.lead.indexOf(b.dataset.metric) > rank);
        lead.insertBefore(box, next || null);
      } else {
        const next = [...more.children].find((b) => b.dataset.metric > name);
        more.insertBefore(box, next || null);
      }
      state.boxes[name] = box;
    }
    function render() {
      for (const r of state.rows) {
        for (const [k, v] of Object.entries(r)) {
          if (typeof v === "number" && !hidden.has(k) && !state.boxes[k]) place(k);
        }
      }
      const xs = state.rows.map((r) => r[xKey]);
      for (const group of [lead, more]) {
        for (const [i, box] of [...group.children].entries()) {
          box.style.setProperty("--chart-color", COLORS[i % COLORS.length]);
          const name = box.dataset.metric;
          draw(box, plan.titles[name] || name, xs, state.rows.map((r) => r[name]));
        }
      }
      if (details) {
        details.hidden = more.children.length === 0;
        details.querySelector("[data-count]").textContent = more.children.length;
      }
    }
    render();
    return { push(row) { state.rows.push(row); render(); } };
  }

  window.Hone = Object.assign(window.Hone || {}, { metricCharts, runCharts });
})();
