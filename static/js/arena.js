// The arena: send a prompt, watch two anonymous answers stream in over the websocket,
// vote (possibly before they finish), then see which versions they were. Past the arena's
// limits the server answers 429 with retry_after: the page says why and counts down.
(function () {
  const root = document.getElementById("arena");
  if (!root) return;
  const form = document.getElementById("arena-form");
  const prompt = document.getElementById("arena-prompt");
  const send = document.getElementById("arena-send");
  const status = document.getElementById("arena-status");
  const answers = document.getElementById("arena-answers");
  const vote = document.getElementById("arena-vote");
  const result = document.getElementById("arena-result");
  const panes = { left: document.getElementById("arena-left"), right: document.getElementById("arena-right") };
  const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
  let battle = null;
  let shownAt = 0;
  let voted = false;
  let delay = 1000;
  let waitUntil = 0;  // a 429's retry time (ms since the epoch): Send stays off until then

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socketPath}`);
    socket.onopen = () => {
      delay = 1000;
      if (Date.now() < waitUntil) return;
      send.disabled = false;
      status.textContent = "Ready.";
    };
    socket.onclose = () => {
      send.disabled = true;
      status.textContent = "Connection lost; reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
    socket.onmessage = (message) => {
      const { event, data } = JSON.parse(message.data);
      if (!battle || data.battle !== battle) return;
      if (event === "arena_token") {
        panes[data.side].append(document.createTextNode(data.text));  // text only, never HTML
      } else if (event === "arena_answer") {
        // Final answer as markdown, rendered and sanitized by the server.
        panes[data.side].innerHTML = data.html;
        panes[data.side].classList.remove("streaming");
        panes[data.side].dataset.done = "1";
        if (panes.left.dataset.done && panes.right.dataset.done) status.textContent = "Both answers are in.";
      } else if (event === "arena_failed") {
        status.textContent = "Generation failed. Send the prompt again.";
      }
    };
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = await response.json();
    if (!response.ok) {
      const error = new Error((data.errors || ["Request failed."]).join(" "));
      error.retryAfter = response.status === 429 ? data.retry_after : 0;
      throw error;
    }
    return data;
  }

  // Send stays off until the retry time; the status line says why and how long is left.
  function waitToRetry(message, seconds) {
    waitUntil = Date.now() + seconds * 1000;
    send.disabled = true;
    const tick = () => {
      const left = Math.ceil((waitUntil - Date.now()) / 1000);
      if (left <= 0) {
        send.disabled = false;
        status.textContent = "Ready.";
        return;
      }
      const time = left >= 120 ? `${Math.ceil(left / 60)} min` : `${left} s`;
      status.textContent = `${message} (Send is back in ${time}.)`;
      setTimeout(tick, 1000);
    };
    tick();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    send.disabled = true;
    status.textContent = "Sending…";
    try {
      const data = await post(root.dataset.startUrl, { prompt: prompt.value });
      battle = data.battle;
      voted = false;
      for (const side of ["left", "right"]) {
        panes[side].textContent = "";
        panes[side].classList.add("streaming");
        delete panes[side].dataset.done;
        document.getElementById(`arena-${side}-name`).textContent = "";
      }
      result.textContent = "";
      answers.hidden = false;
      vote.hidden = false;
      vote.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      shownAt = performance.now();
      status.textContent = "Answering…";
      vote.querySelector("button").focus();
      send.disabled = false;
    } catch (error) {
      if (error.retryAfter) {
        waitToRetry(error.message, error.retryAfter);
      } else {
        status.textContent = error.message;
        send.disabled = false;
      }
    }
  });

  async function castVote(position) {
    if (!battle || voted) return;
    voted = true;
    vote.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const data = await post(root.dataset.voteUrl.replace("/0/", `/${battle}/`), {
        choice: position,
        time_to_vote_ms: Math.round(performance.now() - shownAt),
      });
      document.getElementById("arena-left-name").textContent = `(${data.left})`;
      document.getElementById("arena-right-name").textContent = `(${data.right})`;
      result.textContent = `Vote recorded. Left was ${data.left}, right was ${data.right}.`;
      prompt.focus();
    } catch (error) {
      voted = false;
      vote.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      result.textContent = error.message;
    }
  }

  vote.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-choice]");
    if (button) castVote(button.dataset.choice);
  });
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.key === "Enter" && document.activeElement === prompt) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (event.target.matches("textarea, input") || event.altKey || event.ctrlKey || event.metaKey) return;
    const keys = { 1: "left", 2: "right", 3: "tie", 4: "both_bad" };
    if (keys[event.key] && !vote.hidden) {
      event.preventDefault();
      castVote(keys[event.key]);
    }
  });
  connect();
})();
