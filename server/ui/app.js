// Hearth dashboard: polls the admin API and streams chats from /v1.
// Everything that came from the server is written with textContent, so
// model output or ids can never become markup.
"use strict";

const REFRESH_MS = 3000;
const keyInput = document.getElementById("key");
keyInput.value = localStorage.getItem("hearth-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("hearth-key", keyInput.value.trim());
  refresh();
});

function headers(extra = {}) {
  const key = keyInput.value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function getJSON(path) {
  const reply = await fetch(path, { headers: headers() });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const message = (body.error && body.error.message) || reply.statusText;
    throw new Error(`${path}: ${message}`);
  }
  return body;
}

function fill(tableId, rows, cells, onClick) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const [value, cls] of cells(row)) {
      const td = document.createElement("td");
      td.textContent = value === null || value === undefined ? "" : String(value);
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    if (onClick) tr.addEventListener("click", () => onClick(row));
    body.appendChild(tr);
  }
}

const time = (unix) => (unix ? new Date(unix * 1000).toLocaleTimeString() : "");

async function showQueues() {
  const { data } = await getJSON("/admin/queues");
  fill("queues", data, (q) => [
    [q.name], [q.model || "-"], [q.priority],
    [q.depth, "num"], [q.consumers, "num"], [q.oldest_age_s, "num"],
  ]);
}

async function showWorkers() {
  const { data } = await getJSON("/admin/workers");
  fill("workers", data, (w) => [
    [w.id], [w.models.join(", ")], [w.state, w.state],
    [w.current_tasks.map((t) => `${t.task} ${t.running_s}s`).join("; ")],
    [w.pid, "num"], [w.uptime_s, "num"], [w.last_seen_s, "num"],
  ]);
}

function drawChart(perMinute) {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const now = Math.floor(Date.now() / 60000) * 60;
  const slots = 60;
  const byMinute = new Map(perMinute.map((m) => [m.minute, m]));
  const series = [];
  for (let i = slots - 1; i >= 0; i--) {
    series.push(byMinute.get(now - i * 60) || { requests: 0, errors: 0, p95_ms: 0 });
  }
  const maxRequests = Math.max(1, ...series.map((m) => m.requests));
  const maxLatency = Math.max(1, ...series.map((m) => m.p95_ms));
  const barWidth = width / slots;
  series.forEach((m, i) => {
    const h = (m.requests / maxRequests) * (height - 20);
    ctx.fillStyle = m.errors ? "#d9822b" : "#6b8e9e";
    ctx.fillRect(i * barWidth + 1, height - h, barWidth - 2, h);
  });
  ctx.strokeStyle = "#b00020";
  ctx.beginPath();
  series.forEach((m, i) => {
    const y = height - (m.p95_ms / maxLatency) * (height - 20);
    const x = i * barWidth + barWidth / 2;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#444";
  ctx.fillText(`max ${maxRequests} req/min · p95 up to ${maxLatency} ms`, 4, 12);
}

async function showRequests() {
  const stats = await getJSON("/admin/requests");
  drawChart(stats.per_minute);
  fill("requests", stats.recent, (r) => [
    [time(r.created_at)], [r.request_id], [r.endpoint], [r.model],
    [r.status, r.status >= 400 ? "error" : ""], [r.latency_ms, "num"],
    [r.prompt_tokens + r.completion_tokens, "num"],
  ]);
}

async function showJobDetail(id) {
  const detail = document.getElementById("job-detail");
  try {
    const full = await getJSON(`/v1/jobs/${encodeURIComponent(id)}`);
    // A result can hold thousands of vector numbers: show its start only.
    const { result, ...rest } = full;
    const preview = result ? JSON.stringify(result).slice(0, 400) : "";
    detail.textContent = JSON.stringify(rest, null, 2) +
      (preview ? `\n\nresult (start): ${preview}…` : "");
  } catch (error) {
    detail.textContent = error.message;
  }
}

async function showJobs() {
  const state = document.getElementById("job-state").value;
  const query = state ? `?state=${encodeURIComponent(state)}` : "";
  let data = [];
  try {
    ({ data } = await getJSON(`/v1/jobs${query}`));
  } catch (error) {
    document.getElementById("job-detail").textContent = error.message;
  }
  fill("jobs", data, (j) => [
    [j.id], [j.type], [j.model], [j.state, j.state],
    [j.attempts, "num"], [time(j.created_at)],
  ], (job) => followJob(job.id));
}
document.getElementById("job-state").addEventListener("change", showJobs);

// One job at a time is followed live from /v1/jobs/{id}/events: every state
// it passes through is added to the timeline as the server reports it.
const FINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
let following = null;

async function followJob(id) {
  if (following) following.abort();
  const controller = new AbortController();
  following = controller;
  const stateEl = document.getElementById("job-follow-state");
  const progressEl = document.getElementById("job-follow-progress");
  const timeline = document.getElementById("job-timeline");
  document.getElementById("job-follow").hidden = false;
  document.getElementById("job-follow-id").textContent = id;
  stateEl.textContent = "…";
  stateEl.className = "";
  progressEl.textContent = "";
  timeline.replaceChildren();
  showJobDetail(id);
  try {
    const reply = await fetch(`/v1/jobs/${encodeURIComponent(id)}/events`, {
      headers: headers(), signal: controller.signal,
    });
    if (!reply.ok) throw new Error(`${reply.status} ${reply.statusText}`);
    for await (const { event, data } of sseData(reply)) {
      const body = JSON.parse(data);
      if (event === "progress") {
        const { stage, completion_tokens: tokens } = body;
        progressEl.textContent = tokens !== undefined ? `${tokens} tokens` : stage || "";
        continue;
      }
      if (event !== "state") continue;
      const item = document.createElement("li");
      item.textContent = `${body.state} (attempt ${body.attempt}) ${time(body.at)}`;
      item.className = body.state;
      item.dataset.state = body.state;
      timeline.appendChild(item);
      stateEl.textContent = body.state;
      stateEl.className = body.state;
      if (FINAL.has(body.state)) {
        showJobDetail(id);
        showJobs();
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") progressEl.textContent = `error: ${error.message}`;
  }
}

async function submitJob() {
  const button = document.getElementById("send-job");
  const state = document.getElementById("answer-state");
  button.disabled = true;
  try {
    const reply = await fetch("/v1/jobs", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ request: chatRequest(false) }),
    });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error((body.error && body.error.message) || reply.statusText);
    state.textContent = `job ${body.id} submitted`;
    state.className = "muted";
    showJobs();
    followJob(body.id);
  } catch (error) {
    state.textContent = `error: ${error.message}`;
    state.className = "error";
  } finally {
    button.disabled = false;
  }
}
document.getElementById("send-job").addEventListener("click", submitJob);

async function loadChatModels() {
  const { data } = await getJSON("/admin/models");
  const select = document.getElementById("chat-model");
  select.replaceChildren();
  for (const model of data.filter((m) => m.kind === "chat" && m.workers > 0)) {
    const option = document.createElement("option");
    option.textContent = model.name;
    select.appendChild(option);
  }
}

async function refresh() {
  const status = document.getElementById("status");
  const results = await Promise.allSettled(
    [showQueues(), showWorkers(), showRequests(), showJobs()]
  );
  const failed = results.filter((r) => r.status === "rejected");
  status.className = failed.length ? "error" : "muted";
  status.textContent = failed.length
    ? failed[0].reason.message
    : `updated ${new Date().toLocaleTimeString()}`;
}

// Server-sent events from fetch (EventSource cannot send a key or a body).
async function* sseData(reply) {
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function chatRequest(stream) {
  const request = {
    model: document.getElementById("chat-model").value,
    messages: [{ role: "user", content: document.getElementById("prompt").value }],
    max_tokens: Number(document.getElementById("max-tokens").value),
  };
  return stream ? { ...request, stream: true } : request;
}

async function chat(event) {
  event.preventDefault();
  const answer = document.getElementById("answer");
  const state = document.getElementById("answer-state");
  const send = document.getElementById("send");
  answer.textContent = "";
  state.textContent = "waiting for the first token…";
  send.disabled = true;
  try {
    const reply = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(chatRequest(true)),
    });
    if (!reply.ok) {
      const body = await reply.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || reply.statusText);
    }
    let chunks = 0;
    for await (const { data } of sseData(reply)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices[0] && chunk.choices[0].delta.content;
      if (delta) {
        answer.textContent += delta;
        chunks += 1;
        state.textContent = `streaming… ${chunks} chunks`;
      }
    }
    state.textContent = `done (${chunks} chunks)`;
  } catch (error) {
    state.textContent = `error: ${error.message}`;
    state.className = "error";
  } finally {
    send.disabled = false;
  }
}
document.getElementById("playground").addEventListener("submit", chat);

loadChatModels().catch((error) => {
  document.getElementById("status").textContent = error.message;
});
refresh();
setInterval(refresh, REFRESH_MS);
