// The operations page: /v1/ops every 2 seconds, as a table.
"use strict";

const $ = (id) => document.getElementById(id);
let timer = null;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  return td;
}

async function refresh() {
  const key = $("key").value.trim();
  try {
    const response = await fetch("/v1/ops", { headers: { Authorization: `Bearer ${key}` } });
    const body = await response.json();
    if (!response.ok) {
      $("status").textContent = `Cannot read: ${body.error ? body.error.message : response.status}`;
      $("status").classList.add("error");
      return;
    }
    $("status").classList.remove("error");
    const rows = body.agents.map((a) => {
      const tr = document.createElement("tr");
      tr.append(cell(a.agent), cell(a.role), cell(a.workers), cell(a.pending), cell(a.partitions), cell(a.handled_per_s));
      return tr;
    });
    document.querySelector("#agents tbody").replaceChildren(...rows);
    $("status").textContent = body.error
      ? `Lag could not be read: ${body.error}`
      : body.read_at
        ? `Read at ${new Date(body.read_at * 1000).toLocaleTimeString()}.`
        : "Reading lag…";
  } catch (err) {
    $("status").textContent = `The gateway did not answer: ${err}`;
    $("status").classList.add("error");
  }
}

function start(event) {
  if (event) event.preventDefault();
  localStorage.setItem("agon-key", $("key").value.trim());
  if (timer) clearInterval(timer);
  refresh();
  timer = setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = localStorage.getItem("agon-key") || "";
  $("auth").addEventListener("submit", start);
  if ($("key").value) start();
});
