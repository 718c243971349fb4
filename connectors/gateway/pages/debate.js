// The debate page: start a debate, then follow its Server-Sent Events until DebateEnded.
// EventSource cannot send an Authorization header, so the stream is read with fetch and
// parsed here (text/event-stream); a dropped stream resumes with Last-Event-ID, and an
// event id seen twice is shown once. The page's URL names the debate: a reload follows it
// again from its first event.
"use strict";

const $ = (id) => document.getElementById(id);
let following = null; // the AbortController of the stream being read

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function key() {
  return $("key").value.trim();
}

function authHeaders() {
  return { Authorization: `Bearer ${key()}` };
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : `${response.status}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function side(stance) {
  return stance === "FOR" ? "for" : "against";
}

function render(type, data) {
  if (type === "DebateStarted") {
    $("debate-title").textContent = data.motion;
    const teams = $("teams");
    teams.replaceChildren(
      ...data.speakers.map((s) =>
        el("li", { class: side(s.stance) }, `${s.agent}: ${side(s.stance)} the motion`)
      )
    );
    say(`Debate ${data.debate_id} started: ${data.rounds} round(s).`);
  } else if (type === "TurnTaken") {
    const item = el("li", { class: `turn ${side(data.stance)}`, "data-turn": data.event_id });
    item.append(
      el("h3", {}, `Round ${data.round} · ${data.speaker} (${side(data.stance)})`),
      el("p", {}, data.text || "(no words)"),
      el("p", { class: "meta" }, `${data.model}, ${data.completion_tokens} tokens, ${data.latency_ms} ms`)
    );
    $("turns").append(item);
  } else if (type === "ModeratorNote") {
    $("turns").append(el("li", { class: "note" }, `Moderator: ${data.text}`));
  } else if (type === "DebateEnded") {
    $("ending-title").textContent =
      `Ended: ${data.reason.toLowerCase()} after ${data.rounds_completed} round(s), ${data.tokens_used} tokens`;
    $("ending-detail").textContent = data.detail;
    $("ending-summary").textContent = data.summary;
    $("ending").hidden = false;
    $("cancel").hidden = true;
    say("The debate has ended.");
  }
}

// Parse text/event-stream frames from a fetch body; call onEvent(id, type, data).
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null, type = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") id = text;
        else if (field === "event") type = text;
        else if (field === "data") data += (data ? "\n" : "") + text;
      }
      if (data) onEvent(id, type, JSON.parse(data));
    }
  }
}

async function follow(debateId) {
  if (following) following.abort();
  const controller = (following = new AbortController());
  $("debate").hidden = false;
  $("turns").replaceChildren();
  $("ending").hidden = true;
  $("cancel").hidden = false;
  $("cancel").dataset.debate = debateId;
  const seen = new Set();
  let lastId = null;
  let ended = false;
  say(`Waiting for debate ${debateId} to start…`);
  while (!ended && !controller.signal.aborted) {
    try {
      const headers = authHeaders();
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`/v1/debates/${encodeURIComponent(debateId)}/events`, {
        headers,
        signal: controller.signal,
      });
      if (!response.ok) {
        say(`Cannot follow the debate: ${await problem(response)}`, true);
        return;
      }
      await readEvents(response, (id, type, data) => {
        if (id !== null) {
          if (seen.has(id)) return;
          seen.add(id);
          lastId = id;
        }
        render(type, data);
        ended = ended || type === "DebateEnded";
      });
    } catch (err) {
      if (controller.signal.aborted) return;
      say("The stream was interrupted; resuming…");
    }
    if (!ended) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function start(event) {
  event.preventDefault();
  localStorage.setItem("agon-key", key());
  const go = $("go");
  go.disabled = true;
  say("Asking for a debate…");
  try {
    const response = await fetch("/v1/debates", {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify({ motion: $("motion").value, rounds: Number($("rounds").value) }),
    });
    if (response.status !== 202) {
      say(`The debate was not started: ${await problem(response)}`, true);
      return;
    }
    const created = await response.json();
    history.replaceState(null, "", `?debate=${encodeURIComponent(created.debate_id)}`);
    follow(created.debate_id);
  } catch (err) {
    say(`The gateway did not answer: ${err}`, true);
  } finally {
    go.disabled = false;
  }
}

async function cancel() {
  const debateId = $("cancel").dataset.debate;
  const response = await fetch(`/v1/debates/${encodeURIComponent(debateId)}`, {
    method: "DELETE",
    headers: authHeaders(),
  });
  say(response.status === 202 ? "Cancelling…" : `Not cancelled: ${await problem(response)}`, response.status !== 202);
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = localStorage.getItem("agon-key") || "";
  $("start").addEventListener("submit", start);
  $("cancel").addEventListener("click", cancel);
  const debateId = new URLSearchParams(location.search).get("debate");
  if (debateId && key()) follow(debateId);
});
