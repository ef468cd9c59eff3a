// Small line charts in SVG, no library: Hone.lineChart(element, {series, x}) draws each named
// series against x; chart.push(point) appends a point and redraws (live run curves).
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

  function draw(box, title, xs, ys) {
    box.replaceChildren();
    const W = 320, H = 170, L = 48, R = 10, T = 22, B = 24;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    svg.appendChild(el("text", { x: L, y: 14, class: "chart-title" }, title));
    const pts = xs.map((x, i) => [x, ys[i]]).filter(([, y]) => y !== null && y !== undefined && isFinite(y));
    if (pts.length === 0) {
      svg.appendChild(el("text", { x: L, y: H / 2, class: "chart-empty" }, "no data yet"));
      box.appendChild(svg);
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
    box.appendChild(svg);
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

  window.Hone = Object.assign(window.Hone || {}, { metricCharts });
})();
