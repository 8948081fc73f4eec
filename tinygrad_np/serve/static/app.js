// Draw-a-digit page: strokes on a canvas -> POST /api/predict (throttled) -> digit, bars, 28x28 view.
"use strict";

const STROKE_WIDTH = 20;     // px on the 280 px pad: about MNIST's 2-3 px pen once the digit is 20 px tall
const MIN_INTERVAL_MS = 120; // at most ~8 predictions a second while drawing

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const digitOut = document.getElementById("digit");
const confidenceOut = document.getElementById("confidence");
const statusOut = document.getElementById("status");
const bars = [];

let drawing = false;
let last = null;
let hasInk = false;
let epoch = 0;          // bumped by Clear, so answers about an erased drawing are ignored
let inFlight = false;
let pending = false;
let timer = null;
let lastSent = 0;

function buildBars() {
  const list = document.getElementById("bars");
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="num">${d}</span><span class="track"><span class="fill"></span></span><span class="pct">–</span>`;
    li.dataset.digit = String(d);
    list.appendChild(li);
    bars.push(li);
  }
}

function setStatus(text, isError = false) {
  statusOut.textContent = text;
  statusOut.classList.toggle("error", isError);
}

function updateBusy() {
  document.body.dataset.busy = inFlight || pending || timer !== null ? "1" : "0";
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  seen.fillStyle = "#000";
  seen.fillRect(0, 0, 28, 28);
  hasInk = false;
  epoch += 1;
  pending = false;
  if (timer !== null) { clearTimeout(timer); timer = null; }
  digitOut.textContent = "–";
  confidenceOut.innerHTML = "&nbsp;";
  for (const li of bars) {
    li.classList.remove("top");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "–";
  }
  setStatus("Draw with the mouse, a pen or a finger.");
  updateBusy();
}

function point(event) {
  const rect = pad.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left) * (pad.width / rect.width),
    y: (event.clientY - rect.top) * (pad.height / rect.height),
  };
}

function strokeTo(p) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = STROKE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
  hasInk = true;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  ctx.fillStyle = "#fff";  // a click alone leaves a dot (canvas drops zero-length strokes)
  ctx.beginPath();
  ctx.arc(last.x, last.y, STROKE_WIDTH / 2, 0, 2 * Math.PI);
  ctx.fill();
  hasInk = true;
  schedulePrediction();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) strokeTo(point(e));
  schedulePrediction();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    schedulePrediction();
  });
}

document.getElementById("clear").addEventListener("click", clearPad);

// Throttle: one request in flight at a time, spaced by MIN_INTERVAL_MS; the latest drawing always
// gets its answer, because a change during a request marks it pending and is sent when that returns.
function schedulePrediction() {
  if (!hasInk) return;
  if (inFlight) { pending = true; updateBusy(); return; }
  if (timer !== null) return;
  const wait = Math.max(0, lastSent + MIN_INTERVAL_MS - performance.now());
  timer = setTimeout(() => { timer = null; predict(); }, wait);
  updateBusy();
}

async function predict() {
  inFlight = true;
  pending = false;
  lastSent = performance.now();
  updateBusy();
  const myEpoch = epoch;
  const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
  const pixels = new Array(pad.width * pad.height);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rgba[4 * i];  // white ink: red channel = ink
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ width: pad.width, height: pad.height, pixels }),
    });
    const answer = await response.json();
    if (myEpoch !== epoch) return;
    if (response.ok) show(answer);
    else if (response.status === 422) setStatus("No ink yet: draw a digit.");
    else setStatus(`Error ${response.status}: ${answer.error}`, true);
  } catch (error) {
    if (myEpoch === epoch) setStatus(`Cannot reach the server: ${error}`, true);
  } finally {
    inFlight = false;
    if (pending) schedulePrediction();
    updateBusy();
  }
}

function show(answer) {
  const probabilities = answer.probabilities;
  digitOut.textContent = String(answer.digit);
  confidenceOut.textContent = `${(100 * probabilities[answer.digit]).toFixed(1)}% sure`;
  bars.forEach((li, d) => {
    li.classList.toggle("top", d === answer.digit);
    li.querySelector(".fill").style.width = `${(100 * probabilities[d]).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * probabilities[d]).toFixed(1)}%`;
  });
  const image = seen.createImageData(28, 28);
  answer.image.forEach((row, r) => row.forEach((value, c) => {
    const v = Math.round(255 * value);
    image.data.set([v, v, v, 255], 4 * (28 * r + c));
  }));
  seen.putImageData(image, 0, 0);
  setStatus("Keep drawing, or Clear to start again.");
  document.body.dataset.predictions = String(Number(document.body.dataset.predictions) + 1);
}

async function loadInfo() {
  const banner = document.getElementById("banner");
  try {
    const info = await (await fetch("/api/info")).json();
    banner.textContent = info.banner || "tinygrad-np digit recogniser";
  } catch (error) {
    banner.textContent = `Cannot reach the server: ${error}`;
  }
}

buildBars();
clearPad();
loadInfo();
