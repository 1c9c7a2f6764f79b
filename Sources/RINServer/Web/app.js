// rind's page: pick a model and a class, submit a job, watch it form, see recent jobs.
//
// It speaks the daemon's own HTTP API (openapi.yaml) with relative URLs, so it works at / and
// behind a reverse proxy's path prefix. With an API key configured every call needs
// `Authorization: Bearer <key>`, which neither <img src> nor EventSource can send: images are
// fetched and shown as blob: URLs, and /events is read from a fetch() stream.
"use strict";

const KEY_STORAGE = "rind.apiKey";
const RECENT_JOBS = 12;

const page = {
  status: document.getElementById("server-status"),
  keyPanel: document.getElementById("key-panel"),
  keyMessage: document.getElementById("key-message"),
  keyForm: document.getElementById("key-form"),
  keyInput: document.getElementById("api-key"),
  forgetKey: document.getElementById("forget-key"),
  form: document.getElementById("generate-form"),
  model: document.getElementById("model"),
  modelInfo: document.getElementById("model-info"),
  className: document.getElementById("class"),
  classNames: document.getElementById("class-names"),
  classHint: document.getElementById("class-hint"),
  seed: document.getElementById("seed"),
  steps: document.getElementById("steps"),
  guidance: document.getElementById("guidance"),
  submit: document.getElementById("submit"),
  formError: document.getElementById("form-error"),
  jobPanel: document.getElementById("job-panel"),
  jobImage: document.getElementById("job-image"),
  jobCaption: document.getElementById("job-caption"),
  jobProgress: document.getElementById("job-progress"),
  jobStatus: document.getElementById("job-status"),
  cancel: document.getElementById("cancel"),
  recent: document.getElementById("recent"),
  refresh: document.getElementById("refresh"),
};

const state = {
  models: new Map(),   // name -> the model object of GET /models
  job: null,           // the job shown in the job panel
  watch: null,         // AbortController of the /events stream being read
};

// MARK: - The API

/** Thrown after a 401: the key panel is showing and the caller should stop. */
class NeedsKey extends Error {}

/** An API link ("/jobs/<id>/image.png") as a URL relative to this page. */
function relative(link) {
  return link.replace(/^\/+/, "");
}

function storedKey() {
  return localStorage.getItem(KEY_STORAGE);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = storedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(relative(path), { ...options, headers });
  if (response.status === 401) {
    askForKey(key ? "The daemon refused this key; enter the right one." : "This daemon needs its API key.");
    throw new NeedsKey();
  }
  return response;
}

/** The detail of a problem+json answer (RFC 9457), or the status line. */
async function problemText(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function getJSON(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await problemText(response));
  return response.json();
}

/** Shows the PNG (or animated PNG) at `path` in `img`, fetched with the key, as a blob: URL. */
async function showImage(img, path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await problemText(response));
  const blob = await response.blob();
  const old = img.src;
  await new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error(`the image ${path} could not be decoded`));
    img.src = URL.createObjectURL(blob);
  });
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  img.dataset.src = relative(path);
}

// MARK: - The API key

function askForKey(message) {
  page.keyMessage.textContent = message;
  page.keyPanel.hidden = false;
  page.status.textContent = "waiting for the API key";
  page.keyInput.focus();
}

page.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = page.keyInput.value.trim();
  if (!key) return;
  localStorage.setItem(KEY_STORAGE, key);
  page.keyInput.value = "";
  page.keyPanel.hidden = true;
  start();
});

page.forgetKey.addEventListener("click", () => {
  localStorage.removeItem(KEY_STORAGE);
  location.reload();
});

// MARK: - Models and classes

function modelSummary(model) {
  const image = model.image;
  const size = `${image.width}×${image.height}`;
  const frames = image.frames > 1 ? `, ${image.frames} frames` : "";
  const classes = model.classes.count > 0 ? `, ${model.classes.count} classes` : ", unconditional";
  return `${size}${frames}${classes}`;
}

async function loadModels() {
  const list = await getJSON("models");
  state.models = new Map(list.models.map((model) => [model.name, model]));
  const previous = page.model.value;
  page.model.replaceChildren(...list.models.map((model) => {
    const option = new Option(`${model.name} (${modelSummary(model)})`, model.name);
    option.selected = previous ? model.name === previous : model.name === list.default_model;
    return option;
  }));
  applyModel();
}

/** The classes of the selected model as { id, name } (name null where the model has none). */
function classesOf(model) {
  const names = model.classes.names || [];
  return model.classes.ids.map((id, row) => ({ id, name: names[row] ?? null }));
}

function applyModel() {
  const model = state.models.get(page.model.value);
  if (!model) return;
  page.modelInfo.textContent = `${modelSummary(model)}; ${model.prediction}-prediction`;
  const classes = classesOf(model);
  page.classNames.replaceChildren(...classes.map(({ id, name }) => {
    const option = document.createElement("option");
    option.value = name ?? String(id);
    if (name) option.label = `id ${id}`;
    return option;
  }));
  page.className.disabled = classes.length === 0;
  page.className.value = "";
  page.className.placeholder = classes.length === 0 ? "unconditional model"
    : model.classes.names ? `type to search ${classes.length} names` : `an id, ${classes[0].id} to ${classes[classes.length - 1].id}`;
  const defaultRow = model.defaults.class;
  if (defaultRow !== null && defaultRow >= 0 && defaultRow < classes.length) {
    page.className.value = classes[defaultRow].name ?? String(classes[defaultRow].id);
  }
  page.steps.value = model.defaults.steps;
  page.steps.min = model.limits.steps[0];
  page.steps.max = model.limits.steps[1];
  page.guidance.value = model.defaults.guidance;
  page.guidance.disabled = !model.limits.guidance_supported;
  describeClass();
}

/** The class the text names: a name (any case) or an id; undefined when it names none. */
function findClass(model, text) {
  const wanted = text.trim().toLowerCase();
  return classesOf(model).find(({ id, name }) => String(id) === wanted || (name && name.toLowerCase() === wanted));
}

function describeClass() {
  const model = state.models.get(page.model.value);
  const text = page.className.value.trim();
  if (!model || page.className.disabled) {
    page.classHint.textContent = "";
    return;
  }
  if (!text) {
    page.classHint.textContent = "Type part of a name and pick it from the list.";
    return;
  }
  const found = findClass(model, text);
  if (found) {
    page.classHint.textContent = found.name ? `${found.name}: class id ${found.id}` : `class id ${found.id}`;
    return;
  }
  const needle = text.toLowerCase();
  const matches = classesOf(model).filter(({ name }) => name && name.toLowerCase().includes(needle));
  page.classHint.textContent = matches.length === 0 ? `No class of ${model.name} matches “${text}”.`
    : `${matches.length} ${matches.length === 1 ? "class matches" : "classes match"}: ${matches.slice(0, 5).map((c) => c.name).join(", ")}${matches.length > 5 ? ", …" : ""}`;
}

page.model.addEventListener("change", applyModel);
page.className.addEventListener("input", describeClass);

// MARK: - Submitting

page.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  page.formError.textContent = "";
  const model = state.models.get(page.model.value);
  if (!model) return;
  const body = { model: model.name };
  const classText = page.className.value.trim();
  if (classText && !page.className.disabled) {
    const found = findClass(model, classText);
    if (!found) {
      page.formError.textContent = `“${classText}” is not a class of ${model.name}; pick one from the list.`;
      page.className.focus();
      return;
    }
    body.class = found.id;
  }
  const seed = page.seed.value.trim();
  if (seed !== "") {
    if (!/^\d+$/.test(seed) || !Number.isSafeInteger(Number(seed))) {
      page.formError.textContent = "The seed is a whole number from 0 to 9007199254740991 (2^53 - 1).";
      page.seed.focus();
      return;
    }
    body.seed = Number(seed);
  }
  if (page.steps.value !== "") body.steps = Number(page.steps.value);
  if (page.guidance.value !== "" && !page.guidance.disabled) body.guidance = Number(page.guidance.value);
  page.submit.disabled = true;
  try {
    const response = await api("generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      page.formError.textContent = await problemText(response);
      return;
    }
    showJob(await response.json());
    loadRecent();
  } catch (error) {
    if (!(error instanceof NeedsKey)) page.formError.textContent = error.message;
  } finally {
    page.submit.disabled = false;
  }
});

// MARK: - Watching a job

function jobTitle(job) {
  const params = job.params;
  const what = params.class_name ?? (params.class !== null ? `class ${params.class}` : "unconditional");
  return `${what} · ${job.model} · seed ${params.seed} · ${params.steps} steps · guidance ${params.guidance}`;
}

function describeProgress(job) {
  const progress = job.progress;
  switch (job.status) {
    case "queued":
      return job.queue_position !== null ? `queued (position ${job.queue_position + 1})` : "queued";
    case "running": {
      const eta = progress.eta_s !== null ? `, about ${Math.ceil(progress.eta_s)} s left` : "";
      return `running: step ${progress.step} of ${progress.steps}${eta}`;
    }
    case "succeeded":
      return `done in ${progress.elapsed_s.toFixed(1)} s`;
    case "failed":
      return `failed: ${job.error ?? "no reason given"}`;
    default:
      return job.status;
  }
}

function updateJob(job) {
  state.job = job;
  page.jobPanel.hidden = false;
  page.jobPanel.dataset.job = job.id;
  page.jobPanel.dataset.status = job.status;
  page.jobCaption.textContent = jobTitle(job);
  page.jobProgress.value = job.status === "succeeded" ? 1 : job.progress.fraction;
  page.jobStatus.textContent = describeProgress(job);
  page.cancel.hidden = job.status !== "queued" && job.status !== "running";
}

async function showFinalImage(job) {
  try {
    await showImage(page.jobImage, job.links.image);
    page.jobImage.alt = `Generated image: ${jobTitle(job)}`;
    page.jobImage.dataset.status = "succeeded";
    page.jobImage.dataset.job = job.id;
  } catch (error) {
    if (!(error instanceof NeedsKey)) page.jobStatus.textContent = `the image could not be shown: ${error.message}`;
  }
}

async function showPreview(url) {
  try {
    await showImage(page.jobImage, url);
    page.jobImage.alt = "Preview of the image forming";
  } catch (error) {
    // A preview that vanished (the job moved on) is no reason to stop watching.
  }
}

function showJob(job) {
  if (state.watch) state.watch.abort();
  page.jobImage.removeAttribute("src");
  page.jobImage.alt = "";
  delete page.jobImage.dataset.status;
  delete page.jobImage.dataset.job;
  updateJob(job);
  if (job.status === "succeeded") {
    showFinalImage(job);
  } else if (job.status === "queued" || job.status === "running") {
    watch(job);
  }
  page.jobPanel.scrollIntoView({ block: "nearest" });
}

/** Parses one Server-Sent Events block ("event: x\ndata: {...}") into { name, data }. */
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
}

/** Reads the job's /events until it ends; reconnects when the connection drops mid-run. */
async function watch(job) {
  const controller = new AbortController();
  state.watch = controller;
  let attempts = 0;
  while (!controller.signal.aborted) {
    let finished = false;
    try {
      const response = await api(job.links.events, { signal: controller.signal });
      if (!response.ok) throw new Error(await problemText(response));
      attempts = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r/g, "");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event) finished = (await handleEvent(event)) || finished;
        }
      }
    } catch (error) {
      if (error instanceof NeedsKey || controller.signal.aborted) return;
      page.jobStatus.textContent = `lost the connection (${error.message}); retrying`;
    }
    if (finished || controller.signal.aborted) return;
    attempts += 1;
    if (attempts > 30) {
      page.jobStatus.textContent = "lost the connection to the daemon; reload the page to try again";
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000 * Math.min(attempts, 5)));
  }
}

/** Applies one event; true when it ends the job's stream. */
async function handleEvent({ name, data }) {
  switch (name) {
    case "snapshot":
    case "progress":
      updateJob(data);
      if (name === "snapshot" && data.preview_step !== null && data.status === "running") {
        await showPreview(data.links.preview);
      }
      return false;
    case "preview":
      await showPreview(data.url);
      return false;
    case "done":
      updateJob(data);
      await showFinalImage(data);
      loadRecent();
      return true;
    case "error":
    case "canceled":
    case "requeued":
      updateJob(data);
      if (name === "requeued") page.jobStatus.textContent = "the daemon is restarting; the job runs again when it is back";
      loadRecent();
      return true;
    default:
      return false;
  }
}

page.cancel.addEventListener("click", async () => {
  if (!state.job) return;
  try {
    const response = await api(state.job.links.cancel, { method: "POST" });
    if (!response.ok) page.jobStatus.textContent = await problemText(response);
  } catch (error) {
    if (!(error instanceof NeedsKey)) page.jobStatus.textContent = error.message;
  }
});

// MARK: - Recent jobs

async function loadRecent() {
  let list;
  try {
    list = await getJSON(`jobs?limit=${RECENT_JOBS}`);
  } catch (error) {
    if (!(error instanceof NeedsKey)) page.status.textContent = `could not list jobs: ${error.message}`;
    return;
  }
  const old = [...page.recent.querySelectorAll("img")].map((img) => img.src);
  page.recent.replaceChildren(...list.jobs.map(recentItem));
  old.filter((src) => src.startsWith("blob:")).forEach((src) => URL.revokeObjectURL(src));
}

function recentItem(job) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "job";
  button.dataset.job = job.id;
  button.title = jobTitle(job);
  const img = document.createElement("img");
  img.className = "pixels";
  img.alt = job.status === "succeeded" ? jobTitle(job) : "";
  const caption = document.createElement("span");
  caption.textContent = `${job.params.class_name ?? job.params.class ?? "unconditional"} · ${job.status}`;
  button.append(img, caption);
  button.addEventListener("click", () => showJob(job));
  item.append(button);
  if (job.status === "succeeded") showImage(img, job.links.image).catch(() => {});
  return item;
}

page.refresh.addEventListener("click", loadRecent);

// MARK: - Start

async function start() {
  page.forgetKey.hidden = !storedKey();
  try {
    const ready = await fetch("readyz");
    page.status.textContent = ready.ok ? "ready" : await problemText(ready);
    await loadModels();
    await loadRecent();
  } catch (error) {
    if (error instanceof NeedsKey) return;
    // Still loading its models, or restarting: try again shortly.
    page.status.textContent = `not ready: ${error.message}; trying again`;
    setTimeout(start, 3000);
  }
}

start();
