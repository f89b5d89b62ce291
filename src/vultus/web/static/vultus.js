// Vultus: a little vanilla JavaScript on top of pages that work without it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

// Drop a file on a drop zone: it goes into the zone's file input, as if chosen.
function setUpDropZones() {
  for (const zone of document.querySelectorAll("[data-drop]")) {
    const input = zone.querySelector('input[type="file"]');
    if (!input) continue;
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      input.files = e.dataTransfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
  }
}

// Search and verify: once a photo is chosen, show its faces and let the investigator pick
// one. A file input with data-detect gets a picker; search has one ("face"), verify one per
// photo (data-pick names the choice, data-faces, data-fallback and data-detection the
// elements it uses).
function setUpFacePickers() {
  for (const input of document.querySelectorAll("input[data-detect]")) setUpFacePicker(input);
}

function setUpFacePicker(input) {
  const name = input.dataset.pick || "face";
  const box = document.getElementById(input.dataset.faces || "faces");
  const fallback = document.getElementById(input.dataset.fallback || "face-number");
  const what = input.dataset.legend || "Choose the face to search with";
  if (!box) return;

  function message(text, isError) {
    box.replaceChildren();
    const p = document.createElement("p");
    p.className = isError ? "flash error" : "muted";
    if (isError) p.setAttribute("role", "alert");
    p.textContent = text;
    box.appendChild(p);
  }

  function restoreFallback() {
    if (fallback) { fallback.hidden = false; fallback.querySelector("input").disabled = false; }
  }

  // How hard the photo is searched for faces travels with the search: face N of the
  // picker must be face N of the search.
  const detection = document.getElementById(input.dataset.detection || "detection");

  input.addEventListener("change", () => detect(""));

  async function detect(how) {
    if (detection) detection.value = how;
    if (!input.files || !input.files.length) { box.replaceChildren(); restoreFallback(); return; }
    message(how === "harder" ? "Looking harder for faces (a few seconds)…" : "Finding faces…", false);
    const body = new FormData();
    body.append("photo", input.files[0]);
    body.append("detection", how);
    let data;
    try {
      const response = await fetch(input.dataset.detect, { method: "POST", body, credentials: "same-origin" });
      data = await response.json();
      if (!response.ok) throw new Error(data.error || "the photo could not be read");
    } catch (err) {
      restoreFallback();
      message("This photo cannot be searched: " + err.message, true);
      return;
    }
    if (!data.faces.length) {
      restoreFallback();
      message("No face was found in this photo. Try another photo.", true);
      if (how !== "harder") box.appendChild(harderButton());
      return;
    }
    render(data, how);
  }

  function harderButton() {
    const p = document.createElement("p");
    p.className = "harder";
    const button = document.createElement("button");
    button.type = "button";
    button.id = name === "face" ? "look-harder" : `look-harder-${name}`;
    button.textContent = "Look harder";
    button.addEventListener("click", () => detect("harder"));
    p.append("Is the face you want not boxed? ", button, " (slower: more sizes, more detectors)");
    return p;
  }

  function render(data, how) {
    box.replaceChildren();
    if (fallback) { fallback.hidden = true; fallback.querySelector("input").disabled = true; }
    const wrap = document.createElement("div");
    wrap.className = "picker";

    const figure = document.createElement("figure");
    const size = Math.max(data.width, data.height);
    const svg = svgEl("svg", { viewBox: `0 0 ${data.width} ${data.height}`, "aria-hidden": "true" });
    svg.appendChild(svgEl("image", { href: data.src, x: 0, y: 0, width: data.width, height: data.height }));
    const fieldset = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = `${what} (${data.faces.length} found)`;
    fieldset.appendChild(legend);

    const rects = new Map();
    let firstUsable = null;
    for (const face of data.faces) {
      const [l, t, r, b] = face.box;
      // The whole box takes the click, not only its outline (see .pick in the stylesheet).
      const rect = svgEl("rect", { class: "box pick", x: l, y: t, width: r - l, height: b - t });
      const label = svgEl("text", { class: "label", x: l, y: Math.max(t - size / 80, size / 22), "font-size": size / 22 });
      label.textContent = String(face.number);
      svg.append(rect, label);
      rects.set(face.number, [rect, label]);

      const p = document.createElement("p");
      p.className = "choice";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = name;
      radio.value = String(face.number);
      radio.id = `${name}-${face.number}`;
      radio.disabled = !face.usable;
      const text = document.createElement("label");
      text.htmlFor = radio.id;
      text.textContent = `Face ${face.number}` + (face.number === 1 ? " (the largest)" : "") +
        (face.usable ? "" : ` — cannot be used: ${face.reason}`);
      p.append(radio, text);
      fieldset.appendChild(p);
      if (face.usable) {
        const choose = () => { radio.checked = true; radio.dispatchEvent(new Event("change", { bubbles: true })); radio.focus(); };
        rect.addEventListener("click", choose);
        label.addEventListener("click", choose);
        label.classList.add("pick");
        if (firstUsable === null) firstUsable = radio;
      }
    }
    fieldset.addEventListener("change", () => {
      for (const [number, [rect, label]] of rects) {
        const on = fieldset.querySelector(`#${name}-${number}`).checked;
        rect.classList.toggle("chosen", on);
        label.classList.toggle("chosen", on);
      }
    });
    figure.appendChild(svg);
    const caption = document.createElement("figcaption");
    caption.textContent = "Faces are numbered from the largest. Click one, or choose it in the list.";
    figure.appendChild(caption);
    wrap.append(figure, fieldset);
    box.appendChild(wrap);
    if (how !== "harder") fieldset.appendChild(harderButton());
    if (firstUsable) { firstUsable.checked = true; fieldset.dispatchEvent(new Event("change")); }
  }
}

// Ingest: follow the progress of queued and running jobs.
function setUpJobs() {
  for (const item of document.querySelectorAll("[data-job]")) {
    const url = item.dataset.job;
    const bar = item.querySelector("progress");
    const status = item.querySelector("[data-status]");
    const tick = async () => {
      let job;
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (!response.ok) return setTimeout(tick, 3000);
        job = await response.json();
      } catch (err) {
        return setTimeout(tick, 3000);
      }
      if (job.total) { bar.max = job.total; bar.value = job.done; }
      const parts = [];
      if (job.total) parts.push(`${job.done} of ${job.total} files`);
      const s = job.summary || {};
      if (s.images_added !== undefined) parts.push(`${s.images_added} photos added, ${s.faces_indexed} faces indexed`);
      if (s.images_duplicate) parts.push(`${s.images_duplicate} already held`);
      if (s.faces_suppressed) parts.push(`${s.faces_suppressed} faces refused (suppression list) in ${(s.suppressed_photos || []).join(", ")}`);
      if (s.multi_frame) parts.push(`only the first frame read of ${s.multi_frame.join(", ")}`);
      if (s.errors) parts.push(`${s.errors} errors`);
      if (job.error) parts.push(job.error);
      const badge = document.createElement("span");
      badge.className = "badge " + ({ done: "ok", failed: "bad", running: "info" }[job.status] || "");
      badge.textContent = job.status;
      status.replaceChildren(badge, document.createTextNode(" " + parts.join(" · ")));
      if (job.status === "done") { bar.max = 1; bar.value = 1; }
      if (job.status === "queued" || job.status === "running") setTimeout(tick, 1000);
    };
    setTimeout(tick, 500);
  }
}

// Review: a ticked face is the person; the act's button says how many faces it takes, and
// the page says when decisions are not saved yet.
function setUpReview() {
  const form = document.getElementById("review-form");
  if (!form) return;
  const note = form.querySelector("[data-unsaved]");
  const initial = new Map();
  for (const box of form.querySelectorAll('input[name="include"]')) initial.set(box, box.checked);
  const update = () => {
    let n = 0;
    let changed = false;
    for (const card of form.querySelectorAll("[data-face]")) {
      const box = card.querySelector('input[name="include"]');
      card.classList.toggle("included", box.checked);
      if (box.checked) n += 1;
      if (box.checked !== initial.get(box)) changed = true;
    }
    for (const button of form.querySelectorAll("[data-count]")) {
      button.textContent = `${button.dataset.count} ${n} face${n === 1 ? "" : "s"}`;
      button.disabled = n === 0;
    }
    if (note) note.hidden = !changed;
  };
  form.addEventListener("change", update);
  update();
}

// A photo of several people: clicking a face (its box or number) chooses it.
function setUpPhotoPicker() {
  for (const shape of document.querySelectorAll("svg [data-pick]")) {
    const radio = document.getElementById(shape.dataset.pick);
    if (!radio) continue;
    shape.addEventListener("click", () => {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
      radio.focus();
    });
    radio.addEventListener("change", () => {
      for (const other of document.querySelectorAll("svg [data-pick]")) {
        other.classList.toggle("chosen", document.getElementById(other.dataset.pick).checked);
      }
    });
  }
}

// Actions that cannot be undone ask first.
function setUpConfirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpConfirmations();
  setUpDropZones();
  setUpFacePickers();
  setUpJobs();
  setUpReview();
  setUpPhotoPicker();
});
