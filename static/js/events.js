// Live loop events of the current project: a notice for what matters to annotators, and a
// log on the loop page. Reconnects with backoff; never required for labeling to work.
(function () {
  const slug = document.body.dataset.project;
  if (!slug || !window.WebSocket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/projects/${encodeURIComponent(slug)}/`;
  const notices = document.getElementById("notices");
  const log = document.getElementById("event-log");
  let delay = 1000;

  function notice(text) {
    const div = document.createElement("div");
    div.className = "notice";
    div.textContent = text;  // textContent: event data is never parsed as HTML
    notices.appendChild(div);
    setTimeout(() => div.remove(), 8000);
  }

  function describe(event, data) {
    if (event === "policy_live") return `New policy live: v${data.version}`;
    if (event === "comparisons_added") return `${data.count} new comparisons to label`;
    if (event === "iteration_status") return `Iteration ${data.iteration}: ${data.status}`;
    if (event === "run_status") return `Run ${data.run_id} (${data.kind}): ${data.status}`;
    return null;
  }

  function connect() {
    const socket = new WebSocket(url);
    socket.onopen = () => { delay = 1000; document.body.dataset.events = "open"; };
    socket.onmessage = (message) => {
      const { event, data } = JSON.parse(message.data);
      document.dispatchEvent(new CustomEvent("hone:event", { detail: { event, data } }));
      const text = describe(event, data);
      if (text && (event === "policy_live" || event === "comparisons_added")) notice(text);
      if (log) {
        const li = document.createElement("li");
        li.textContent = `${new Date().toLocaleTimeString()} ${text || event + " " + JSON.stringify(data)}`;
        log.prepend(li);
      }
    };
    socket.onclose = () => { document.body.dataset.events = "closed"; setTimeout(connect, delay); delay = Math.min(delay * 2, 30000); };
  }
  connect();
})();
