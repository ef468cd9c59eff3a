// The labeling workspace: keyboard first, the next item swapped in by htmx, time per item,
// a submit that survives a lost connection (retried with the same assignment id: the
// server returns the stored label instead of making a second one).
(function () {
  const workspace = document.getElementById("workspace");
  if (!workspace) return;
  const slug = workspace.dataset.project;
  let started = performance.now();
  let retryDelay = 1000;

  // ---- guidelines: open the first time, then as the annotator left them ----
  const guidelines = document.getElementById("guidelines");
  const guidelinesKey = `hone:guidelines-open:${slug}`;
  const remembered = localStorage.getItem(guidelinesKey);
  guidelines.open = remembered === null ? true : remembered === "1";
  guidelines.addEventListener("toggle", () => {
    localStorage.setItem(guidelinesKey, guidelines.open ? "1" : "0");
  });

  const item = () => document.getElementById("item");
  const form = () => document.getElementById("label-form");
  const openDialog = () => document.querySelector("dialog[open]");

  function flash(text) {
    const box = document.createElement("div");
    box.className = "flash error";
    box.setAttribute("role", "alert");
    box.textContent = text;
    item().querySelectorAll(".flash").forEach((el) => el.remove());
    item().querySelector(".progress").after(box);
  }

  // A form swapped in a moment ago may not be wired by htmx yet: wire it, then submit, so a
  // fast key press never falls back to a plain (full page) form submission.
  function send(f) {
    htmx.process(f);
    f.requestSubmit();
  }

  function choose(key, strong) {
    const input = form() && form().querySelector(`input[name=choice][data-key="${key}"]`);
    if (!input) return;
    input.checked = true;
    if (strong) setStrength(3);
  }

  function setStrength(value) {
    const input = form() && form().querySelector(`input[name=strength][value="${value}"]`);
    if (input) input.checked = true;
  }

  function submitLabel() {
    const f = form();
    if (!f) return;
    if (!f.querySelector("input[name=choice]:checked")) {
      flash("Pick a choice first: 1 left, 2 right, 3 tie, 4 both bad.");
      return;
    }
    send(f);
  }

  function showDialog(id) {
    const dialog = document.getElementById(id);
    if (!dialog) return;
    dialog.showModal();
    const first = dialog.querySelector("input[type=radio]:checked") || dialog.querySelector("input, button");
    if (first) first.focus();
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open]");
    if (opener) showDialog(opener.dataset.open);
    const closer = event.target.closest("[data-close]");
    if (closer) closer.closest("dialog").close();
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.key === "Enter" && form()) {  // from the rationale box too
      event.preventDefault();
      submitLabel();
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const dialog = openDialog();
    const typing = event.target.matches("textarea, input:not([type=radio]), select");
    if (dialog) {
      // Inside skip/flag: digits pick a reason, Enter confirms, Esc cancels (native).
      const radios = dialog.querySelectorAll("input[type=radio]");
      if (!typing && /^[1-9]$/.test(event.key) && radios[Number(event.key) - 1]) {
        radios[Number(event.key) - 1].checked = true;
        radios[Number(event.key) - 1].focus();
        event.preventDefault();
      } else if (event.key === "Enter" && dialog.querySelector("form[hx-post]")) {
        event.preventDefault();
        const dialogForm = dialog.querySelector("form[hx-post]");
        dialog.close();
        send(dialogForm);
      }
      return;
    }
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "Enter" && event.target.closest("button, a, summary")) return;  // native
    const digit = /^Digit([1-4])$/.exec(event.code);
    if (digit) {
      event.preventDefault();
      choose(digit[1], event.shiftKey);
      return;
    }
    const actions = {
      z: () => setStrength(1),
      x: () => setStrength(2),
      c: () => setStrength(3),
      Enter: submitLabel,
      s: () => showDialog("skip-dialog"),
      f: () => showDialog("flag-dialog"),
      u: () => { const undo = document.getElementById("undo-form"); if (undo) send(undo); },
      r: () => { const box = document.getElementById("rationale"); if (box) box.focus(); },
      g: () => { guidelines.open = !guidelines.open; },
      "?": () => showDialog("shortcuts"),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // ---- time per item, and the next item swapped in ----
  document.body.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.elt.id === "label-form") {
      event.detail.parameters.time_spent_ms = String(Math.round(performance.now() - started));
    }
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id !== "item" && !(event.detail.elt && event.detail.elt.id === "item")) return;
    const fresh = item();
    if (fresh && fresh.dataset.assignment !== workspace.dataset.lastAssignment) {
      started = performance.now();  // a new item: its clock starts now
      workspace.dataset.lastAssignment = fresh.dataset.assignment || "";
    }
    retryDelay = 1000;
    if (fresh) fresh.focus({ preventScroll: false });
  });
  workspace.dataset.lastAssignment = (item() && item().dataset.assignment) || "";

  // ---- a lost connection: say so, and send the same request again until it gets through ----
  document.body.addEventListener("htmx:sendError", (event) => {
    const source = event.detail.elt;
    flash(`Connection lost. Your answer is kept and sent again in ${Math.round(retryDelay / 1000)} s.`);
    setTimeout(() => {
      if (document.body.contains(source) && source.requestSubmit) send(source);
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  });

  // ---- new items while the queue is empty: fetch one without a reload (and, as the loop
  // moves, what it is waiting for) ----
  const loopMoves = ["comparisons_added", "iteration_status", "run_status"];
  document.addEventListener("hone:event", (event) => {
    if (loopMoves.includes(event.detail.event) && item() && !item().dataset.assignment) {
      htmx.ajax("GET", workspace.dataset.itemUrl, { target: "#item", swap: "outerHTML" });
    }
  });
})();
