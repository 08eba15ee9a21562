// A small line chart on a canvas: time on x, series on y, no library.
"use strict";

// Series keeps the last `capacity` points of several named lines.
class Series {
  constructor(names, capacity) {
    this.names = names;
    this.capacity = capacity || 150;
    this.t = [];
    this.v = names.map(() => []);
  }
  push(t, values) {
    this.t.push(t);
    values.forEach((x, i) => this.v[i].push(x));
    if (this.t.length > this.capacity) {
      this.t.shift();
      this.v.forEach((a) => a.shift());
    }
  }
  last(i) {
    const a = this.v[i];
    return a.length ? a[a.length - 1] : 0;
  }
}

const chartColors = ["#2463d6", "#e07b24", "#1f9d55"];

// drawChart draws s on canvas, scaled to its largest value; opts.integer
// keeps the axis on whole numbers (counts).
function drawChart(canvas, s, unit, opts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 56, right = 8, top = 8, bottom = 20;
  let max = 0;
  s.v.forEach((a) => a.forEach((x) => { if (x > max) max = x; }));
  max = niceMax(max);
  if (opts && opts.integer) max = Math.max(4, Math.ceil(max / 4) * 4);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#6b7686";
  g.strokeStyle = "#e6e9ef";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * (1 - i / 4);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
    const v = max * i / 4;
    g.fillText((opts && opts.integer ? String(Math.round(v)) : formatNumber(v)) + (unit || ""), 4, y + 4);
  }
  if (s.t.length < 2) {
    g.fillText("collecting…", left + 8, top + 16);
    return;
  }
  const t0 = s.t[0], t1 = s.t[s.t.length - 1];
  const x = (t) => left + (w - left - right) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => top + (h - top - bottom) * (1 - v / max);
  const span = (t1 - t0) / 1000;
  g.fillText(span >= 120 ? Math.round(span / 60) + " min" : Math.round(span) + " s", w - right - 40, h - 4);
  s.v.forEach((a, i) => {
    g.strokeStyle = chartColors[i % chartColors.length];
    g.lineWidth = 2;
    g.beginPath();
    a.forEach((v, j) => { j === 0 ? g.moveTo(x(s.t[j]), y(v)) : g.lineTo(x(s.t[j]), y(v)); });
    g.stroke();
  });
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function formatNumber(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  if (v >= 10 || v === 0) return String(Math.round(v));
  return v.toFixed(1);
}
