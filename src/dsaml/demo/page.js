// The demo page's script: the marker that follows playback, and the live control that samples the listener's
// arousal and valence every half second of the song. Gradio re-renders the HTML blocks whenever the server
// sends a new view, so nothing here holds on to an element: a timer looks the player and the pad up each tick,
// and the pad's listeners are delegated from the document.
(() => {
  if (window.dsamlDemo) return;
  const TICK_MS = 40; // well under a half second even when the song is played at 4x
  const state = {
    song: null,       // data-song of the view the samples belong to
    steps: 0,         // half-second steps of that song
    stepSeconds: 0.5,
    values: [],       // step -> [arousal, valence] or null
    last: null,       // the step recorded at the previous tick of continuous playback
    point: null,      // [arousal, valence] where the listener holds the control, null before the first move
  };
  const round = (x) => Math.round(x * 1000) / 1000;
  const clamp = (x) => Math.max(-1, Math.min(1, x));
  const view = () => document.querySelector(".dsaml-view[data-song]");
  const pad = () => document.getElementById("dsaml-pad");
  const parsedPoints = new WeakMap();

  function points(svg) {
    if (!parsedPoints.has(svg)) {
      parsedPoints.set(svg, (svg.dataset.points || "").split(" ").filter(Boolean).map((p) => p.split(",").map(Number)));
    }
    return parsedPoints.get(svg);
  }

  function moveMarkers(root, time) {
    const step = Math.max(0, Math.floor(time / state.stepSeconds));
    root.querySelectorAll("svg.dsaml-time").forEach((svg) => {
      const x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, duration = +svg.dataset.duration || 1;
      const x = x0 + (x1 - x0) * Math.min(1, time / duration);
      const line = svg.querySelector(".dsaml-now");
      if (line) { line.setAttribute("x1", x); line.setAttribute("x2", x); }
    });
    root.querySelectorAll("svg.dsaml-plane").forEach((svg) => {
      const list = points(svg);
      const circle = svg.querySelector(".dsaml-now");
      if (!circle || !list.length) return;
      const [cx, cy] = list[Math.min(step, list.length - 1)];
      circle.setAttribute("cx", cx); circle.setAttribute("cy", cy);
    });
  }

  function annotated() { return state.values.filter((v) => v).length; }

  function showReadout() {
    const out = document.getElementById("dsaml-pad-readout");
    if (!out) return;
    const where = state.point
      ? `arousal ${state.point[0] >= 0 ? "+" : ""}${state.point[0].toFixed(2)}, valence ${state.point[1] >= 0 ? "+" : ""}${state.point[1].toFixed(2)}`
      : "move the point to start";
    const count = state.song ? `${annotated()} of ${state.steps} half-seconds annotated` : "no song yet";
    out.textContent = `${where} \u00b7 ${count}`;
    out.dataset.annotated = String(annotated());
    const dot = document.querySelector("#dsaml-pad .dsaml-pad-dot");
    if (dot && state.point) {
      dot.style.left = `${(state.point[1] + 1) * 50}%`;
      dot.style.top = `${(1 - state.point[0]) * 50}%`;
      dot.style.display = "block";
    }
  }

  function record(time) {
    const step = Math.min(Math.floor(time / state.stepSeconds), state.steps - 1);
    if (step < 0 || !state.point) return;
    // steps skipped between two ticks of continuous playback (a slow tick) get the value held over them
    const from = state.last !== null && step > state.last && step - state.last <= 3 ? state.last + 1 : step;
    for (let i = from; i <= step; i++) state.values[i] = state.point.slice();
    state.last = step;
  }

  function tick() {
    const root = view();
    const audio = root && root.querySelector("audio");
    if (!root || !audio) return;
    if (root.dataset.song !== state.song) { // a new song: its annotation starts empty
      state.song = root.dataset.song;
      state.steps = +root.dataset.steps || 0;
      state.stepSeconds = +root.dataset.stepSeconds || 0.5;
      state.values = new Array(state.steps).fill(null);
      state.last = null;
    }
    moveMarkers(root, audio.currentTime);
    if (!audio.paused && !audio.ended) record(audio.currentTime); else state.last = null;
    showReadout();
  }

  function placeAt(event) {
    const box = pad().getBoundingClientRect();
    const v = clamp(((event.clientX - box.left) / box.width) * 2 - 1);
    const a = clamp(1 - ((event.clientY - box.top) / box.height) * 2);
    state.point = [round(a), round(v)];
    showReadout();
  }

  document.addEventListener("pointermove", (e) => { if (e.target.closest && e.target.closest("#dsaml-pad")) placeAt(e); });
  document.addEventListener("pointerdown", (e) => { if (e.target.closest && e.target.closest("#dsaml-pad")) placeAt(e); });
  document.addEventListener("keydown", (e) => {
    if (!(e.target.closest && e.target.closest("#dsaml-pad"))) return;
    const moves = { ArrowUp: [0.1, 0], ArrowDown: [-0.1, 0], ArrowRight: [0, 0.1], ArrowLeft: [0, -0.1] };
    if (!moves[e.key]) return;
    e.preventDefault();
    const [a, v] = state.point || [0, 0];
    state.point = [round(clamp(a + moves[e.key][0])), round(clamp(v + moves[e.key][1]))];
    showReadout();
  });
  document.addEventListener("click", (e) => {
    if (!(e.target.closest && e.target.closest("#dsaml-pad-clear"))) return;
    state.values = new Array(state.steps).fill(null);
    state.last = null;
    showReadout();
  });

  window.dsamlDemo = {
    // what the "personalize" button sends: the samples of the song on the page
    liveAnnotation: () => JSON.stringify({ song: state.song, values: state.values }),
    state,
  };
  setInterval(tick, TICK_MS);
})();
