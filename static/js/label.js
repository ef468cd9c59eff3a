// The labeling workspace: keyboard first, the next item swapped in by htmx, time per item,
// a submit that survives a lost connection (retried with the same assignment id: the
// server returns the stored label instead of making a second one). Two modes besides
// choosing: editing one of the two answers (e; the edit goes with the label), and writing
// answers to prompts (w; the item becomes a prompt and a text box, its draft kept in
// localStorage until it is stored).
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
  const writeForm = () => document.getElementById("write-form");
  const openDialog = () => document.querySelector("dialog[open]");
  const editor = () => document.querySelector("textarea.edit-text:not([disabled])");

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

  // ---- editing an answer: its text box takes the rendered answer's place; the label form
  // sends it (the box belongs to the form) with the side it edits ----
  function openEditor(position) {
    const card = document.querySelector(`.answer[data-position="${position}"]`);
    const box = card && card.querySelector("textarea.edit-text");
    const side = document.getElementById("edit-side");
    if (!box || !side) return;
    closeEditor();
    item().querySelectorAll(".flash.error").forEach((el) => el.remove());  // said before: done
    card.classList.add("editing");
    card.querySelector(".answer-text").hidden = true;
    box.hidden = false;
    box.disabled = false;
    side.value = box.dataset.side;
    side.disabled = false;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function closeEditor() {
    const box = editor();
    if (!box) return;
    box.value = box.defaultValue;  // cancelled: the answer as it was
    box.hidden = true;
    box.disabled = true;
    const card = box.closest(".answer");
    card.classList.remove("editing");
    card.querySelector(".answer-text").hidden = false;
    const side = document.getElementById("edit-side");
    side.value = "";
    side.disabled = true;
  }

  function startEdit() {
    const f = form();
    if (!f || !document.getElementById("edit-side")) return;
    const chosen = f.querySelector("input[name=choice]:checked");
    if (!chosen) {
      flash("Choose first (1 left, 2 right, 3 tie, 4 both bad), then e to edit an answer.");
      return;
    }
    if (chosen.dataset.key === "1" || chosen.dataset.key === "2") {
      openEditor(chosen.dataset.key === "1" ? "left" : "right");
    } else {
      showDialog("edit-dialog");  // a tie or both bad: which one to edit?
    }
  }

  // ---- writing answers: the item becomes a prompt with a text box ----
  function draftKey(box) {
    return `hone:draft:${slug}:${box.dataset.draft}`;
  }

  function startWriting() {
    if (!workspace.dataset.writeUrl) return;
    htmx.ajax("GET", workspace.dataset.writeUrl, { target: "#item", swap: "outerHTML" });
  }

  function stopWriting() {
    htmx.ajax("GET", workspace.dataset.itemUrl, { target: "#item", swap: "outerHTML" });
  }

  function submitAnswer() {
    const f = writeForm();
    const box = f && f.querySelector("textarea");
    if (!box) return;
    if (!box.value.trim()) {
      flash("Write an answer first: the box is empty.");
      return;
    }
    send(f);
  }

  document.addEventListener("input", (event) => {
    const box = event.target;
    if (box.matches && box.matches("textarea[data-draft]")) {
      localStorage.setItem(draftKey(box), box.value);
    }
  });

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
    if (event.target.closest("[data-edit]")) startEdit();
    if (event.target.closest("[data-write]") && workspace.dataset.writeUrl) {
      event.preventDefault();  // a link without JavaScript: /p/<slug>/write/
      startWriting();
    }
    if (event.target.closest("[data-leave-write]") && workspace.dataset.itemUrl) {
      event.preventDefault();
      stopWriting();
    }
  });

  // The edit dialog (which answer after a tie or both bad) opens the editor, not a request.
  document.addEventListener("submit", (event) => {
    const dialog = event.target.closest("dialog[data-action=edit-side]");
    if (!dialog) return;
    event.preventDefault();
    const picked = dialog.querySelector("input[type=radio]:checked");
    dialog.close();
    openEditor(picked ? picked.value : "left");
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.key === "Enter" && writeForm()) {
      event.preventDefault();
      submitAnswer();
      return;
    }
    if (event.ctrlKey && event.key === "Enter" && form()) {  // from the rationale and edit boxes too
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
      } else if (event.key === "Enter" && dialog.dataset.action === "edit-side") {
        event.preventDefault();
        const picked = dialog.querySelector("input[type=radio]:checked");
        dialog.close();
        openEditor(picked ? picked.value : "left");
      } else if (event.key === "Enter" && dialog.querySelector("form[hx-post]")) {
        event.preventDefault();
        const dialogForm = dialog.querySelector("form[hx-post]");
        dialog.close();
        send(dialogForm);
      }
      return;
    }
    const writing = item() && item().dataset.mode === "write";
    if (event.key === "Escape" && event.target.matches("textarea.edit-text")) {
      event.preventDefault();
      closeEditor();
      item().focus();
      return;
    }
    if (event.key === "Escape" && writing) {  // from the answer box too: back to labeling
      event.preventDefault();
      stopWriting();
      return;
    }
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (writing && event.key !== "g" && event.key !== "?") {  // no choice to make here
      if (event.key === "w") {
        event.preventDefault();
        stopWriting();
      }
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
      e: startEdit,
      w: startWriting,
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
  // What the item is: a lease to label, or a prompt to answer; its clock starts when it changes.
  const itemKey = (el) => (el ? el.dataset.assignment || (el.dataset.prompt ? `w${el.dataset.prompt}` : "") : "");

  document.body.addEventListener("htmx:configRequest", (event) => {
    const id = event.detail.elt.id;
    if (id === "label-form" || id === "write-form") {
      event.detail.parameters.time_spent_ms = String(Math.round(performance.now() - started));
    }
  });
  // An answer stored: its draft is no longer needed.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const elt = event.detail.elt;
    if (elt.id === "write-form" && event.detail.successful) {
      const box = elt.querySelector("textarea[data-draft]");
      if (box) localStorage.removeItem(draftKey(box));
    }
  });

  // The state a fresh item starts in: a writing box with its draft and the focus; an edit
  // that came back refused, open again with what was typed.
  function prepare(fresh) {
    const box = fresh.querySelector("#write-text");
    if (box) {
      const draft = localStorage.getItem(draftKey(box));
      if (!box.value && draft) box.value = draft;
      box.focus();
      return;
    }
    const posted = fresh.querySelector("textarea.edit-text[data-posted]");
    if (posted) {
      openEditor(posted.closest(".answer").dataset.position);
      posted.value = posted.dataset.posted;
      return;
    }
    fresh.focus({ preventScroll: false });
  }

  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id !== "item" && !(event.detail.elt && event.detail.elt.id === "item")) return;
    const fresh = item();
    if (fresh && itemKey(fresh) !== workspace.dataset.lastAssignment) {
      started = performance.now();  // a new item: its clock starts now
      workspace.dataset.lastAssignment = itemKey(fresh);
    }
    retryDelay = 1000;
    if (fresh) prepare(fresh);
  });
  workspace.dataset.lastAssignment = itemKey(item());
  if (item() && (item().dataset.mode === "write" || item().querySelector("textarea.edit-text[data-posted]"))) {
    prepare(item());
  }

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
    if (loopMoves.includes(event.detail.event) && item() && !item().dataset.assignment
        && item().dataset.mode !== "write") {
      htmx.ajax("GET", workspace.dataset.itemUrl, { target: "#item", swap: "outerHTML" });
    }
  });
})();
