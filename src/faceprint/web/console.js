// faceprint console: plain JavaScript over the REST API (docs/api.md). No external assets, no build step.
// The session token lives in sessionStorage only (this tab); every request sends it as a Bearer token.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SESSION = "faceprint.session";
const PLAIN = {
  UnrecognizedClientException: "The access key or secret is not right, or the key has been revoked.",
  ExpiredTokenException: "Your session has expired. Sign in again.",
  MissingAuthenticationTokenException: "You are not signed in.",
  AccessDeniedException: "This access key is not allowed to do that.",
  ResourceNotFoundException: "That was not found; it may have been deleted.",
  ResourceAlreadyExistsException: "Something with that name already exists.",
  InvalidParameterException: "The request was not accepted.",
  InvalidImageFormatException: "That file is not a photo faceprint can read (JPEG, PNG, WebP or HEIC).",
  ImageTooLargeException: "The photo is too large (at most 5 MB and 40 megapixels).",
  InvalidS3ObjectException: "That video or image was not found in the bucket.",
  ThrottlingException: "The server is busy. Try again in a moment.",
  LimitExceededException: "Too many video jobs are running. Try again when one has finished.",
  ServiceQuotaExceededException: "The collection is full.",
  ConflictException: "That conflicts with the current state (for example a face already has a user).",
  InternalServerError: "The server failed. The request id helps its operator find out why.",
  NetworkError: "The server could not be reached.",
};

class ApiError extends Error {
  constructor(code, message, status) { super(message); this.code = code; this.status = status; }
}

// --- state ----------------------------------------------------------------------------------------------
const state = { session: null, collection: "", facesToken: null, facesPages: [], lastSearch: null };

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION) || "null");
    return s && s.token ? s : null;
  } catch (e) { return null; }
}

// --- the API --------------------------------------------------------------------------------------------
// One request; `form` (FormData) or `json` body; onProgress(fraction) for uploads. Resolves to the parsed
// JSON (or a Blob/text for `as`), rejects with ApiError(code, message).
function api(method, path, { json, form, onProgress, as, auth } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.responseType = as === "blob" ? "blob" : "text";
    if (auth) xhr.setRequestHeader("Authorization", auth);
    else if (state.session) xhr.setRequestHeader("Authorization", "Bearer " + state.session.token);
    let body = null;
    if (json !== undefined) { xhr.setRequestHeader("Content-Type", "application/json"); body = JSON.stringify(json); }
    if (form) body = form;
    if (onProgress) xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError("NetworkError", "no answer from " + location.origin, 0));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (as === "blob" || as === "text") return resolve(xhr.response);
        try { resolve(JSON.parse(xhr.responseText || "{}")); } catch (e) { reject(new ApiError("InternalServerError", "unreadable answer", xhr.status)); }
        return;
      }
      let code = "HTTP" + xhr.status, message = xhr.statusText;
      try {
        const text = as === "blob" ? null : xhr.responseText;
        const err = JSON.parse(text || "{}").error || {};
        code = err.code || code; message = err.message || message;
      } catch (e) { /* keep the HTTP status */ }
      const error = new ApiError(code, message, xhr.status);
      if (xhr.status === 401 && state.session) signOut(error);
      reject(error);
    };
    xhr.send(body);
  });
}

// --- messages and progress -------------------------------------------------------------------------------
function showError(err) {
  const box = $("#error");
  box.replaceChildren();
  const plain = PLAIN[err.code] || "Something went wrong.";
  const p = document.createElement("p");
  p.append(el("strong", {}, plain), " ", err.message ? err.message + " " : "", el("span", { class: "pill mono" }, "error code: " + err.code));
  box.append(p);
  box.hidden = false;
  status("");
}
function clearError() { $("#error").hidden = true; $("#error").replaceChildren(); }
function status(text) { $("#status").textContent = text; }
function progress(fraction) {
  const bar = $("#progress");
  if (fraction === null) { bar.hidden = true; bar.removeAttribute("value"); return; }
  bar.hidden = false;
  if (fraction === undefined) bar.removeAttribute("value"); else bar.value = Math.round(fraction * 100);
}
async function busy(label, work) {
  clearError(); status(label + "…"); progress(undefined);
  try { const out = await work(); status(""); return out; }
  catch (err) { if (err instanceof ApiError) showError(err); else showError(new ApiError("ConsoleError", String(err), 0)); return undefined; }
  finally { progress(null); }
}

// --- small DOM helpers -----------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const pct = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(2));
function rate(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "0";
  if (x >= 0.01) return x.toPrecision(2);
  return x.toExponential(1).replace("e-", "×10⁻").replace(/⁻(\d+)/, (m, d) => "⁻" + d.split("").map((c) => "⁰¹²³⁴⁵⁶⁷⁸⁹"[c]).join(""));
}
function oneIn(x) { return x > 0 ? "about 1 in " + Math.round(1 / x).toLocaleString("en") : "none"; }
const when = (epoch) => (epoch ? new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");
const enc = encodeURIComponent;
const cpath = (suffix = "") => "/v1/collections/" + enc(state.collection) + suffix;
function needCollection() {
  if (!state.collection) throw new ApiError("NoCollection", "Create or choose a collection first (Collections view).", 0);
}
function tableBody(sel, rows, empty) {
  const body = $(sel + " tbody");
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: $(sel + " thead tr").children.length, class: "note" }, empty)));
}
const td = (text, cls) => el("td", { class: cls }, text === undefined || text === null ? "–" : String(text));

// --- sign in / out ---------------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  const keyId = $("#key-id").value.trim(), secret = $("#key-secret").value;
  const out = await busy("Signing in", () => api("POST", "/v1/sessions", { auth: "Basic " + btoa(keyId + ":" + secret) }));
  $("#key-secret").value = "";
  if (!out) return;
  state.session = { token: out.SessionToken, expiration: out.Expiration, keyId };
  sessionStorage.setItem(SESSION, JSON.stringify(state.session));
  enter();
}

function signOut(reason) {
  state.session = null;
  sessionStorage.removeItem(SESSION);
  for (const sel of ["#collections-table tbody", "#faces-table tbody", "#users-table tbody", "#audit-table tbody", "#search-figure",
    "#search-faces", "#search-summary", "#compare-result", "#video-timeline", "#accuracy-chart", "#accuracy-report", "#index-result", "#audit-chain"]) {
    $(sel).replaceChildren();
  }
  $("#video-job").textContent = "";
  $("#collection").replaceChildren();
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("#tabs").hidden = true; $("#signed-in").hidden = true; $("#signin").hidden = false;
  if (reason instanceof ApiError) showError(reason); else clearError();
  $("#key-id").focus();
}

function enter() {
  $("#signin").hidden = true; $("#tabs").hidden = false; $("#signed-in").hidden = false;
  $("#who").textContent = "signed in as " + state.session.keyId + ", session until " + new Date(state.session.expiration * 1000).toLocaleTimeString();
  show("collections");
}

// --- views -----------------------------------------------------------------------------------------------
const LOADERS = {};
function show(view) {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const n of document.querySelectorAll(".cname")) n.textContent = state.collection || "(no collection)";
  if (LOADERS[view]) LOADERS[view]();
}
const current = () => (document.querySelector("#tabs button[aria-pressed=true]") || {}).dataset?.view;

// Collections ---------------------------------------------------------------------------------------------
LOADERS.collections = async () => {
  const out = await busy("Loading collections", async () => {
    const ids = [];
    let token = null;
    do {
      const page = await api("GET", "/v1/collections" + (token ? "?next_token=" + enc(token) : ""));
      ids.push(...page.collections); token = page.next_token;
    } while (token);
    return Promise.all(ids.map((id) => api("GET", "/v1/collections/" + enc(id)).then((d) => ({ id, ...d }))));
  });
  if (!out) return;
  fillCollectionSelect(out.map((c) => c.id));
  tableBody("#collections-table", out.map((c) => el("tr", {},
    el("td", {}, el("button", { type: "button", class: "linkish", onclick: () => choose(c.id), "aria-label": "Use collection " + c.id }, c.id)),
    td(c.FaceCount, "num"), td(c.UserCount, "num"), td(c.FaceModelVersion),
    td(pct(c.DefaultFaceMatchThreshold), "num"),
    td(meaning(c)), td(when(c.CreationTimestamp)),
    el("td", {}, el("button", { type: "button", class: "danger", onclick: () => deleteCollection(c.id), "aria-label": "Delete collection " + c.id }, "Delete")),
  )), "No collections yet: create one above.");
};
function meaning(c) {
  const n = c.FaceCount || 0, e = c.ExpectedFalseMatchesPerSearch || 0;
  return `At ${n.toLocaleString("en")} face${n === 1 ? "" : "s"}, a search for someone not enrolled is expected to return a false match ${e.toPrecision(2)} times (${oneIn(e)} searches).`;
}
function fillCollectionSelect(ids) {
  const select = $("#collection");
  if (!ids.includes(state.collection)) state.collection = ids[0] || "";
  select.replaceChildren(...ids.map((id) => el("option", { value: id, selected: id === state.collection }, id)));
  for (const n of document.querySelectorAll(".cname")) n.textContent = state.collection || "(no collection)";
}
function choose(id) { state.collection = id; $("#collection").value = id; show("faces"); }
async function createCollection(event) {
  event.preventDefault();
  const id = $("#new-collection").value.trim();
  const ok = await busy("Creating " + id, () => api("POST", "/v1/collections", { json: { CollectionId: id } }));
  if (ok) { state.collection = id; $("#new-collection").value = ""; status("Created collection " + id + "."); LOADERS.collections(); }
}
async function deleteCollection(id) {
  if (!confirm(`Delete collection ${id} and every face in it? This cannot be undone.`)) return;
  const ok = await busy("Deleting " + id, () => api("DELETE", "/v1/collections/" + enc(id)));
  if (ok) { if (state.collection === id) state.collection = ""; LOADERS.collections(); }
}

// Faces and users -----------------------------------------------------------------------------------------
LOADERS.faces = () => { state.facesPages = []; loadFaces(null); loadUsers(); };
async function loadFaces(token) {
  const size = $("#faces-page-size").value;
  const out = await busy("Loading faces", () => { needCollection(); return api("GET", cpath("/faces?max_results=" + size + (token ? "&next_token=" + enc(token) : ""))); });
  if (!out) return;
  state.facesToken = out.NextToken || null;
  $("#faces-next").disabled = !state.facesToken;
  tableBody("#faces-table", out.Faces.map((f) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", class: "face-pick", value: f.FaceId, "aria-label": "Select face " + (f.ExternalImageId || f.FaceId) })),
    el("td", {}, f.HasChip ? chip(f.FaceId) : "–"),
    td(f.ExternalImageId), el("td", { class: "mono" }, f.FaceId), td(f.UserId), td(pct(f.Confidence), "num"), td(when(f.IndexedAt)),
  )), "No faces in this collection: index photos above.");
}
function chip(faceId) {
  const img = el("img", { class: "chip", alt: "aligned face " + faceId });
  api("GET", cpath("/faces/" + enc(faceId) + "/chip"), { as: "blob" }).then((b) => { img.src = URL.createObjectURL(b); }, () => {});
  return img;
}
async function loadUsers() {
  const out = await busy("Loading users", () => { needCollection(); return api("GET", cpath("/users")); });
  if (!out) return;
  $("#associate-user").replaceChildren(...out.Users.map((u) => el("option", { value: u.UserId }, u.UserId)));
  tableBody("#users-table", out.Users.map((u) => el("tr", {}, td(u.UserId), td(u.UserStatus),
    el("td", {}, el("button", { type: "button", class: "danger", onclick: () => deleteUser(u.UserId), "aria-label": "Delete user " + u.UserId }, "Delete")))), "No users yet.");
}
const picked = () => [...document.querySelectorAll(".face-pick:checked")].map((c) => c.value);
async function indexPhotos(event) {
  event.preventDefault();
  const files = [...$("#index-files").files];
  const results = [];
  const ok = await busy("Indexing", async () => {
    needCollection();
    for (const [i, file] of files.entries()) {
      status(`Indexing ${file.name} (${i + 1} of ${files.length})…`);
      const form = new FormData();
      form.append("image", file, file.name);
      form.append("external_image_id", file.name.replace(/\.[^.]+$/, "").replace(/[^a-zA-Z0-9_.\-:]/g, "_"));
      form.append("quality_filter", $("#index-quality").value);
      form.append("max_faces", $("#index-max").value || "1");
      const out = await api("POST", cpath("/faces"), { form, onProgress: (f) => progress((i + f) / files.length) });
      results.push({ file: file.name, out });
    }
    return true;
  });
  $("#index-result").replaceChildren(el("ul", {}, ...results.map((r) => el("li", {},
    `${r.file}: ${r.out.faces.length} face${r.out.faces.length === 1 ? "" : "s"} indexed` +
    (r.out.unindexed_faces.length ? `, ${r.out.unindexed_faces.length} not indexed (${r.out.unindexed_faces.map((u) => u.reasons.join(", ")).join("; ")})` : "")))));
  if (ok) { status(`Indexed ${results.length} photo${results.length === 1 ? "" : "s"}.`); $("#index-files").value = ""; LOADERS.faces(); }
}
async function deleteFaces() {
  const ids = picked();
  if (!ids.length) return showError(new ApiError("NothingSelected", "Select faces with their checkboxes first.", 0));
  if (!confirm(`Delete ${ids.length} face(s)?`)) return;
  const out = await busy("Deleting faces", () => api("DELETE", cpath("/faces"), { json: { FaceIds: ids } }));
  if (out) { status(`Deleted ${(out.DeletedFaces || []).length}; not deleted: ${(out.UnsuccessfulFaceDeletions || []).length}.`); loadFaces(null); }
}
async function createUser(event) {
  event.preventDefault();
  const id = $("#new-user").value.trim();
  const ok = await busy("Creating user " + id, () => api("POST", cpath("/users"), { json: { UserId: id } }));
  if (ok) { $("#new-user").value = ""; status("Created user " + id + "."); loadUsers(); }
}
async function deleteUser(id) {
  if (!confirm(`Delete user ${id}? Its faces stay in the collection.`)) return;
  if (await busy("Deleting user " + id, () => api("DELETE", cpath("/users/" + enc(id))))) { loadUsers(); loadFaces(null); }
}
async function associate() {
  const ids = picked(), user = $("#associate-user").value;
  if (!ids.length || !user) return showError(new ApiError("NothingSelected", "Select faces and a user first.", 0));
  const out = await busy("Associating", () => api("POST", cpath("/users/" + enc(user) + "/faces"), { json: { FaceIds: ids } }));
  if (out) { status(`Associated ${(out.AssociatedFaces || []).length}; not associated: ${(out.UnsuccessfulFaceAssociations || []).length}.`); loadFaces(null); }
}

// Search every face ---------------------------------------------------------------------------------------
const REASONS = {
  LOW_CONFIDENCE: "the detector is not sure it is a face", SMALL_BOUNDING_BOX: "too small in the photo",
  EXTREME_POSE: "turned too far from the camera", LOW_BRIGHTNESS: "too dark", LOW_SHARPNESS: "too blurred",
};
function matchName(m) { return m.Face.ExternalImageId || m.Face.UserId || m.Face.FaceId.slice(0, 8); }
async function searchPhoto(event) {
  event.preventDefault();
  const file = $("#search-file").files[0];
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("quality_filter", $("#search-quality").value);
  if ($("#search-threshold").value) form.append("threshold", $("#search-threshold").value);
  const out = await busy("Searching every face", () => { needCollection(); return api("POST", cpath("/search-faces"), { form, onProgress: progress }); });
  if (!out) return;
  const url = URL.createObjectURL(file);
  const figure = $("#search-figure");
  const img = el("img", { src: url, alt: "the searched photo, " + out.Faces.length + " faces boxed" });
  figure.replaceChildren(img);
  out.Faces.forEach((face, i) => {
    const n = i + 1, best = face.Searched && face.FaceMatches.length ? face.FaceMatches[0] : null;
    const label = n + (best ? " " + matchName(best) : face.Searched ? " no match" : " not searched");
    const box = el("div", { class: "box" + (best ? "" : face.Searched ? " nomatch" : " skipped"), "data-face": n, "aria-hidden": "true" }, el("span", { class: "tag" }, label));
    const b = face.BoundingBox;
    box.style.left = b.Left * 100 + "%"; box.style.top = b.Top * 100 + "%";
    box.style.width = b.Width * 100 + "%"; box.style.height = b.Height * 100 + "%";
    figure.append(box);
  });
  $("#search-summary").replaceChildren(el("p", {}, `${out.Faces.length} face${out.Faces.length === 1 ? "" : "s"} found in ${file.name}. Threshold used: `,
    el("strong", {}, pct(out.FaceMatchThreshold)), ` (${$("#search-threshold").value ? "yours" : "calibrated default"}); expected false matches per face searched: ${rate(out.ExpectedFalseMatches)}.`),
    ...(out.Warnings || []).map((w) => el("p", { class: "banner bad" }, w)));
  $("#search-faces").replaceChildren(...out.Faces.map((face, i) => faceCard(face, i + 1)));
}
function faceCard(face, n) {
  const card = el("article", { class: "face", "data-face": n, "aria-label": "Face " + n });
  card.append(el("h3", {}, `Face ${n} `, el("span", { class: "note" }, `detector confidence ${pct(face.Confidence)}`)));
  if (!face.Searched) {
    card.append(el("p", { class: "fail" }, "Not searched: fails the quality filter: " + face.Reasons.map((r) => `${r} (${REASONS[r] || r})`).join(", ") + "."));
    return card;
  }
  if (!face.FaceMatches.length) { card.append(el("p", {}, "No match at or above the threshold.")); return card; }
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...["Match", "Similarity", "False match rate", "FaceId"].map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const m of face.FaceMatches) body.append(el("tr", { class: "match" }, td(matchName(m)), td(pct(m.Similarity), "num"), td(rate(m.EstimatedFalseMatchRate), "num"), el("td", { class: "mono" }, m.Face.FaceId.slice(0, 8) + "…")));
  table.append(body);
  card.append(el("div", { class: "scroll" }, table));
  return card;
}

// Compare -------------------------------------------------------------------------------------------------
async function compare(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("source", $("#compare-source").files[0]);
  form.append("target", $("#compare-target").files[0]);
  form.append("threshold", "0"); // every face of the second photo, with its score; the default is applied below
  const out = await busy("Comparing", () => api("POST", "/v1/compare", { form, onProgress: progress }));
  if (!out) return;
  const d = out.DefaultSimilarityThreshold;
  const rows = out.FaceMatches.map((m, i) => {
    const passes = m.Similarity >= d;
    return el("tr", {}, td(i + 1, "num"), td(pct(m.Similarity), "num"), td(rate(m.EstimatedFalseMatchRate), "num"),
      el("td", { class: passes ? "pass" : "fail" }, passes ? "Yes: same person at the 1:1 default" : "No: below the 1:1 default"));
  });
  const table = el("table", { id: "compare-table" }, el("thead", {}, el("tr", {}, ...["Face in the second photo", "Similarity", "False match rate", "Passes the default?"].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, ...rows));
  $("#compare-result").replaceChildren(
    el("p", {}, `The 1:1 default threshold is Similarity ${pct(d)}: at most 1 false match in ${Math.round(1 / out.DefaultFalseMatchRate).toLocaleString("en")} comparisons of different people.`),
    rows.length ? el("div", { class: "scroll" }, table) : el("p", {}, "No face in the second photo."));
}

// Video ---------------------------------------------------------------------------------------------------
async function startVideo(event) {
  event.preventDefault();
  const upload = document.querySelector("input[name=video-source]:checked").value === "upload";
  const threshold = $("#video-threshold").value;
  const started = await busy("Starting the video search", () => {
    needCollection();
    if (upload) {
      const file = $("#video-file").files[0];
      if (!file) throw new ApiError("NoVideo", "Choose a video file first.", 0);
      const form = new FormData();
      form.append("collection_id", state.collection);
      form.append("filename", file.name);
      if (threshold) form.append("threshold", threshold);
      form.append("video", file, file.name);
      return api("POST", "/v1/video-searches", { form, onProgress: (f) => { progress(f); status(`Uploading ${file.name}: ${Math.round(f * 100)}%`); } });
    }
    const json = { CollectionId: state.collection, Video: { S3Object: { Bucket: $("#video-bucket-name").value, Name: $("#video-object").value } } };
    if (threshold) json.FaceMatchThreshold = Number(threshold);
    return api("POST", "/v1/video-searches", { json });
  });
  if (!started) return;
  $("#video-job").textContent = "Job " + started.JobId + " started.";
  pollVideo(started.JobId);
}
async function pollVideo(jobId) {
  clearError();
  progress(0);
  for (;;) {
    let out;
    try { out = await api("GET", "/v1/video-searches/" + enc(jobId)); }
    catch (err) { progress(null); showError(err); return; }
    if (out.JobStatus !== "IN_PROGRESS") {
      progress(null);
      if (out.JobStatus === "FAILED") { showError(new ApiError("VideoJobFailed", out.StatusMessage || "the job failed", 0)); return; }
      const persons = [...out.Persons];
      let token = out.NextToken;
      while (token) {
        const page = await api("GET", "/v1/video-searches/" + enc(jobId) + "?next_token=" + enc(token));
        persons.push(...page.Persons); token = page.NextToken;
      }
      status("Video search finished.");
      $("#video-job").textContent = `Job ${jobId}: ${out.JobStatus}.`;
      drawTimeline(persons, out.VideoMetadata || {});
      return;
    }
    const p = out.Progress || 0;
    progress(p); status(`Searching the video: ${Math.round(p * 100)}%`);
    await new Promise((r) => setTimeout(r, 800));
  }
}
// Person by person: tracks matched to the same collection face (by ExternalImageId or UserId) form one row;
// the tracks that matched nobody share the last row.
function drawTimeline(persons, meta) {
  const tracks = new Map();
  for (const p of persons) {
    const t = tracks.get(p.Person.Index) || { index: p.Person.Index, times: [], best: null };
    t.times.push(p.Timestamp);
    for (const m of p.FaceMatches || []) if (!t.best || m.Similarity > t.best.Similarity) t.best = m;
    tracks.set(p.Person.Index, t);
  }
  const duration = meta.DurationMillis || Math.max(1, ...persons.map((p) => p.Timestamp));
  const step = meta.FrameRate ? 1000 / meta.FrameRate : 200;
  const people = new Map(), others = { name: "Not in the collection", tracks: [], best: null };
  for (const t of tracks.values()) {
    if (!t.best) { others.tracks.push(t); continue; }
    const name = matchName(t.best), who = people.get(name) || { name, tracks: [], best: t.best };
    who.tracks.push(t);
    if (t.best.Similarity > who.best.Similarity) who.best = t.best;
    people.set(name, who);
  }
  const rows = [...people.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (others.tracks.length) rows.push(others);
  const secs = (ms) => (ms / 1000).toFixed(1);
  const lines = rows.map((who) => {
    const spans = [];
    for (const t of who.tracks) {
      t.times.sort((a, b) => a - b);
      for (const ts of t.times) {
        const last = spans[spans.length - 1];
        if (last && last[2] === t.index && ts - last[1] <= Math.max(1000, 3 * step)) last[1] = ts; else spans.push([ts, ts, t.index]);
      }
    }
    spans.sort((a, b) => a[0] - b[0]);
    const ranges = spans.map((s) => `${secs(s[0])}–${secs(s[1])} s`).join(", ");
    const lane = el("div", { class: "lane", role: "img", "aria-label": `${who.name}: ${ranges}` });
    for (const [a, b, index] of spans) {
      const span = el("div", { class: "span", title: `track ${index}: ${secs(a)}–${secs(b)} s` });
      span.style.left = (a / duration) * 100 + "%"; span.style.width = (Math.max(b - a, step) / duration) * 100 + "%";
      lane.append(span);
    }
    const n = who.tracks.length;
    const desc = who.best
      ? `best Similarity ${pct(who.best.Similarity)} (FMR ${rate(who.best.EstimatedFalseMatchRate)}) over ${n} track${n === 1 ? "" : "s"}; at ${ranges}`
      : `${n} tracked face${n === 1 ? "" : "s"} below the threshold; at ${ranges}`;
    return el("div", { class: "track" + (who.best ? "" : " unmatched"), "data-person": who.name },
      el("div", {}, el("strong", {}, who.name), el("div", { class: "note" }, desc)), lane);
  });
  $("#video-timeline").replaceChildren(
    el("h3", {}, `Timeline: ${people.size} ${people.size === 1 ? "person" : "people"} of the collection found among ${tracks.size} tracked faces`),
    el("div", { class: "timeline" }, ...lines),
    el("div", { class: "axis", "aria-hidden": "true" }, el("span", {}, "0 s"), el("span", {}, secs(duration / 2) + " s"), el("span", {}, secs(duration) + " s")));
}

// Audit ---------------------------------------------------------------------------------------------------
LOADERS.audit = () => loadAudit();
async function loadAudit(event) {
  if (event) event.preventDefault();
  const q = new URLSearchParams();
  const iso = (v) => new Date(v).toISOString();
  if ($("#audit-since").value) q.set("since", iso($("#audit-since").value));
  if ($("#audit-until").value) q.set("until", iso($("#audit-until").value));
  if ($("#audit-operation").value) q.set("operation", $("#audit-operation").value);
  q.set("limit", $("#audit-limit").value || "200");
  const out = await busy("Loading the audit log", () => api("GET", "/v1/audit-log?" + q));
  if (!out) return;
  const v = out.Verification;
  $("#audit-chain").replaceChildren(v.Ok
    ? el("p", { class: "banner ok", id: "chain-status" }, `Chain verified: all ${v.Rows.toLocaleString("en")} records link up; head ${v.Head.slice(0, 16)}…. ${out.Matched} record(s) match the filter; newest first.`)
    : el("p", { class: "banner bad", id: "chain-status" }, `Chain BROKEN at record ${v.BadSeq}: ${v.Reason}. ${v.Rows} records verified before it.`));
  tableBody("#audit-table", out.Records.map((r) => {
    const d = r.detail && typeof r.detail === "object" ? r.detail : {};
    const extra = [d.via && "via " + d.via, d.face_number && `face ${d.face_number} of ${d.faces_in_image}`, d.threshold === "default" && "default threshold",
      d.external_image_id && "image " + d.external_image_id, d.reasons && d.reasons.length && "not searched: " + d.reasons.join(", ")].filter(Boolean).join("; ");
    return el("tr", { class: "audit-row" }, td(r.seq, "num"), td(r.time.replace("T", " ").slice(0, 23)), td(r.operation), el("td", { class: "mono" }, r.key_id || "–"),
      td(r.collection), td(r.threshold === null ? null : pct(r.threshold), "num"), td(r.matches, "num"), td(r.outcome), td(extra));
  }), "No audit records match.");
}

// Accuracy ------------------------------------------------------------------------------------------------
LOADERS.accuracy = async () => {
  const out = await busy("Loading the calibration curve", () => { needCollection(); return api("GET", cpath("/calibration")); });
  if (out) $("#accuracy-chart").replaceChildren(curve(out));
  const reports = await busy("Looking for an audit report", () => api("GET", "/v1/reports"));
  if (!reports) return;
  const r = reports.AuditReport;
  $("#accuracy-report").replaceChildren(r
    ? el("p", {}, `The last demographic audit report (faceprint audit, ${when(r.Modified)}): `, el("button", { type: "button", onclick: openReport }, "Open the audit report"))
    : el("p", { class: "note" }, "No faceprint audit report under the home folder yet (run faceprint audit --out $FACEPRINT_HOME/reports)."));
};
async function openReport() {
  const blob = await busy("Opening the report", () => api("GET", "/v1/reports/audit.html", { as: "blob" }));
  if (blob) window.open(URL.createObjectURL(new Blob([blob], { type: "text/html" })), "_blank", "noopener");
}
function curve(data) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 760, H = 380, L = 64, R = 16, T = 16, B = 48, minExp = -12;
  const x = (s) => L + (s / 100) * (W - L - R);
  const y = (f) => T + (-Math.log10(Math.max(f, 10 ** minExp)) / -minExp) * (H - T - B);
  const svg = (tag, attrs, text) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text) n.textContent = text; return n; };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "curve-title curve-desc", id: "calibration-curve" });
  root.append(svg("title", { id: "curve-title" }, `False match rate against Similarity, model ${data.CalibrationModelVersion}`));
  root.append(svg("desc", { id: "curve-desc" }, `Calibrated on ${data.Dataset || "LFW"}. The 1:1 default ${pct(data.DefaultCompareThreshold)} and this collection's search default ${pct(data.DefaultFaceMatchThreshold)} are marked.`));
  for (let e = 0; e >= minExp; e -= 2) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(10 ** e), y2: y(10 ** e), stroke: "#e3e8ee" }));
    root.append(svg("text", { x: L - 6, y: y(10 ** e) + 4, "text-anchor": "end", "font-size": 12, fill: "#56616c" }, e === 0 ? "1" : "1e" + e));
  }
  for (let s = 0; s <= 100; s += 10) {
    root.append(svg("line", { x1: x(s), x2: x(s), y1: T, y2: H - B, stroke: "#eef1f4" }));
    root.append(svg("text", { x: x(s), y: H - B + 18, "text-anchor": "middle", "font-size": 12, fill: "#56616c" }, String(s)));
  }
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", "font-size": 13, fill: "#1d232a" }, "Similarity"));
  root.append(svg("text", { x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`, "text-anchor": "middle", "font-size": 13, fill: "#1d232a" }, "False match rate (log)"));
  const pts = data.Points.map((p) => `${x(p.Similarity).toFixed(1)},${y(p.FalseMatchRate).toFixed(1)}`).join(" ");
  root.append(svg("polyline", { points: pts, fill: "none", stroke: "#0b5cad", "stroke-width": 2.5 }));
  if (data.TailFrom < 100) {
    root.append(svg("rect", { x: x(data.TailFrom), y: T, width: x(100) - x(data.TailFrom), height: H - B - T, fill: "#0b5cad", opacity: 0.06 }));
    const tx = x(data.TailFrom) + 10;
    root.append(svg("text", { x: tx, y: T + 8, transform: `rotate(90 ${tx} ${T + 8})`, "font-size": 11, fill: "#56616c" }, "fitted tail (an estimate)"));
  }
  const mark = (s, label, color, dy) => {
    root.append(svg("line", { x1: x(s), x2: x(s), y1: T, y2: H - B, stroke: color, "stroke-dasharray": "5 4", "stroke-width": 1.5 }));
    root.append(svg("text", { x: x(s) - 4, y: H - B - 8 - dy, "text-anchor": "end", "font-size": 12, fill: color }, label));
  };
  mark(data.DefaultCompareThreshold, `1:1 default ${pct(data.DefaultCompareThreshold)}`, "#137333", 0);
  mark(data.DefaultFaceMatchThreshold, `search default at ${data.FaceCount} faces ${pct(data.DefaultFaceMatchThreshold)}`, "#a15c00", 16);
  return el("figure", { class: "chart" }, root, el("figcaption", { class: "note" },
    `Model ${data.FaceModelVersion} (calibration of ${data.CalibrationModelVersion}). Above Similarity ${pct(data.TailFrom)} too few impostor pairs were seen, so the rate there comes from a fitted tail: an estimate.`));
}

// --- wiring ----------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
  $("#collection").addEventListener("change", (e) => { state.collection = e.target.value; const v = current(); if (v && v !== "collections") show(v); else show(v || "collections"); });
  $("#create-collection").addEventListener("submit", createCollection);
  $("#refresh-collections").addEventListener("click", () => LOADERS.collections());
  $("#index-form").addEventListener("submit", indexPhotos);
  $("#faces-first").addEventListener("click", () => loadFaces(null));
  $("#faces-next").addEventListener("click", () => loadFaces(state.facesToken));
  $("#faces-page-size").addEventListener("change", () => loadFaces(null));
  $("#faces-delete").addEventListener("click", deleteFaces);
  $("#user-form").addEventListener("submit", createUser);
  $("#associate").addEventListener("click", associate);
  $("#search-form").addEventListener("submit", searchPhoto);
  $("#compare-form").addEventListener("submit", compare);
  $("#video-form").addEventListener("submit", startVideo);
  for (const r of document.querySelectorAll("input[name=video-source]")) r.addEventListener("change", () => {
    const up = document.querySelector("input[name=video-source]:checked").value === "upload";
    $("#video-upload").hidden = !up; $("#video-bucket").hidden = up;
  });
  $("#audit-form").addEventListener("submit", loadAudit);
  state.session = loadSession();
  if (state.session && state.session.expiration * 1000 > Date.now()) enter();
  else { if (state.session) signOut(new ApiError("ExpiredTokenException", "", 401)); else $("#key-id").focus(); }
});
