/* Data page: upload a file to the API with a progress bar, then show the result or every
   problem (line, field, message). Text goes in with textContent: file contents are untrusted. */
(function () {
  "use strict";
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]");

  function show(box, lines, ok) {
    box.replaceChildren();
    box.className = "result " + (ok ? "good" : "error");
    const list = document.createElement("ul");
    for (const line of lines) {
      const item = document.createElement("li");
      item.textContent = line;
      list.appendChild(item);
    }
    box.appendChild(list);
  }

  function describe(body) {
    if (body.errors) {
      return body.errors.map(function (e) {
        const where = e.line === undefined ? "" : (e.line === 0 ? "file" : "line " + e.line) + ", ";
        return where + e.field + ": " + e.message;
      });
    }
    const lines = [];
    if ("demonstration_ids" in body) {
      lines.push(body.created + " demonstrations imported (" + body.prompts_created + " new prompts).");
    } else if ("created" in body) {
      lines.push(body.created + " prompts imported.");
    }
    if ("labels" in body) lines.push(body.labels + " labels on " + body.comparisons + " comparisons imported.");
    const skipped = body.skipped_duplicates || body.skipped || [];
    if (skipped.length) lines.push(skipped.length + " skipped: lines " + skipped.map(function (s) { return s.line; }).join(", ") + ".");
    return lines;
  }

  for (const form of document.querySelectorAll("form.upload")) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const bar = form.querySelector("progress");
      const box = form.querySelector(".result");
      const button = form.querySelector("button");
      const request = new XMLHttpRequest();
      request.open("POST", form.dataset.url);
      request.setRequestHeader("X-CSRFToken", csrf ? csrf.value : "");
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      });
      request.addEventListener("load", function () {
        let body = {};
        try { body = JSON.parse(request.responseText); } catch (_) { body = {errors: [{field: "response", message: "HTTP " + request.status}]}; }
        bar.value = 100;
        button.disabled = false;
        show(box, describe(body), request.status < 300);
      });
      request.addEventListener("error", function () {
        button.disabled = false;
        show(box, ["The upload failed: network error."], false);
      });
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      box.textContent = "Uploading…";
      request.send(new FormData(form));
    });
  }
})();
