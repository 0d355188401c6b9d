// The dashboard's live charts (console/dashboard.py, templates/dashboard.html).
//
// Polls /console/stats.json every 10 s (the sampler's interval), draws the
// "in" and "out" series as SVG lines in each element with data-series
// ("minutes": 1-minute slots of the last hour, "fine": 10 s slots of the
// last 10 minutes) and refreshes every element with data-stat="a.b" from
// the JSON. No library, no inline script (the console's CSP is
// script-src 'self'); the page already shows every number without it.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 600, H = 160, PAD = 28;
  const POLL_MS = 10000;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw(box, slots, perMinute) {
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "plot" });
    const scale = perMinute;  // 10 s slots are shown as a per-minute rate
    let max = 1;
    for (const s of slots) max = Math.max(max, s.in * scale, s.out * scale);
    const x = (i) => PAD + (i * (W - 2 * PAD)) / Math.max(1, slots.length - 1);
    const y = (v) => H - PAD - (v * (H - 2 * PAD)) / max;
    svg.appendChild(el("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }));
    svg.appendChild(el("line", { x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis" }));
    svg.appendChild(el("text", { x: 2, y: PAD + 4, class: "tick" }, String(Math.round(max))));
    svg.appendChild(el("text", { x: 2, y: H - PAD + 4, class: "tick" }, "0"));
    if (slots.length) {
      svg.appendChild(el("text", { x: PAD, y: H - 6, class: "tick" }, slots[0].label));
      svg.appendChild(el("text", { x: W - PAD - 40, y: H - 6, class: "tick" },
        slots[slots.length - 1].label));
    }
    for (const key of ["in", "out"]) {
      const points = slots.map((s, i) => x(i).toFixed(1) + "," + y(s[key] * scale).toFixed(1));
      svg.appendChild(el("polyline", { points: points.join(" "), class: "line " + key }));
    }
    box.replaceChildren(svg);
  }

  function pick(data, path) {
    let v = data;
    for (const part of path.split(".")) {
      if (v === null || v === undefined) return undefined;
      v = v[part];
    }
    return v;
  }

  function show(data) {
    for (const box of document.querySelectorAll("[data-series]")) {
      const name = box.getAttribute("data-series");
      if (Array.isArray(data[name])) draw(box, data[name], name === "fine" ? 60 / data.interval : 1);
    }
    for (const node of document.querySelectorAll("[data-stat]")) {
      const v = pick(data, node.getAttribute("data-stat"));
      if (node.getAttribute("data-format") === "pct") {
        node.textContent = v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %";
      } else if (v !== undefined) {
        node.textContent = String(v);
      }
    }
  }

  async function poll() {
    try {
      const answer = await fetch("/console/stats.json", { credentials: "same-origin" });
      if (answer.ok) show(await answer.json());
    } catch (e) {
      // the server is restarting or the network is down: try again later
    }
  }

  if (document.getElementById("dashboard")) {
    poll();
    setInterval(poll, POLL_MS);
  }
})();
