// The Channelstream admin panel: reads admin/admin.json every few seconds and renders it.
// Plain DOM, no build step, no outside resources. Every value from the server is written with
// textContent, never as HTML (user names, states and messages come from the API's callers).

const REFRESH_SECONDS = 5;
const DATA_URL = "admin/admin.json";
const DISCONNECT_URL = "admin/disconnect";
const USER_DISCONNECT_URL = "admin/user_disconnect";
const SIGN_IN_URL = "admin/sign_in";
const SIGN_OUT_URL = "admin/sign_out";
// Admin actions are JSON POSTs from this page: the server refuses them from other origins and
// in any other content type (a cross-site form or no-cors fetch cannot send JSON).
const JSON_HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

const state = {
  selectedChannel: null, // name of the channel whose details are shown
  openDetails: new Set(), // keys of <details> elements the user opened
  data: null,
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

// "1 connection", "2 connections": counts in words read as a person would write them.
function count(number, singular, plural = singular + "s") {
  return `${number} ${number === 1 ? singular : plural}`;
}

const SUMMARY_LENGTH = 160;

// What a history entry said, on one line: its `text` when it has one, else compact JSON.
function messageSummary(message) {
  const text =
    message && typeof message === "object" && typeof message.text === "string"
      ? message.text
      : JSON.stringify(message);
  return text.length > SUMMARY_LENGTH ? text.slice(0, SUMMARY_LENGTH - 1) + "…" : text;
}

// Edited, private, hidden from some users: what a history row says besides its text.
function historyNotes(entry) {
  const notes = [];
  if (entry.edited) notes.push(`edited ${shortTime(entry.edited)}`);
  if (entry.type && entry.type !== "message") notes.push(entry.type);
  if (entry.pm_users && entry.pm_users.length) notes.push(`only to ${entry.pm_users.join(", ")}`);
  if (entry.exclude_users && entry.exclude_users.length) notes.push(`not to ${entry.exclude_users.join(", ")}`);
  return notes.join(" · ");
}

function historyTable(history) {
  const rows = history.map((entry) =>
    el(
      "tr",
      { "data-uuid": entry.uuid, class: entry.edited ? "edited" : null },
      el("td", { "data-label": "Time", text: shortTime(entry.timestamp) }),
      el("td", { "data-label": "User", text: entry.user || "" }),
      el("td", { "data-label": "Message", class: "message", title: json(entry.message), text: messageSummary(entry.message) }),
      el("td", { "data-label": "Notes", class: "notes", text: historyNotes(entry) }),
    ),
  );
  return el(
    "table",
    { class: "history" },
    el("thead", {}, el("tr", {}, ...["Time", "User", "Message", "Notes"].map((name) => el("th", { text: name })))),
    el("tbody", {}, ...rows),
  );
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+$/, "") + " UTC" : "";
}

function trackedDetails(key, summary, body) {
  const details = el("details", { "data-key": key, open: state.openDetails.has(key) });
  details.addEventListener("toggle", () => {
    if (details.open) state.openDetails.add(key);
    else state.openDetails.delete(key);
  });
  details.append(el("summary", { text: summary }), body);
  return details;
}

function renderFigures(data) {
  const figures = [
    ["Uptime", data.uptime, "uptime"],
    ["Users connected", data.unique_user_count, "users-connected"],
    ["Users remembered", data.remembered_user_count, "users-remembered"],
    ["Connections", data.total_connections, "connections"],
    ["Listeners (this node)", data.listeners, "listeners"],
    ["Channels", data.total_channels, "channels"],
    ["Messages in", data.total_unique_messages, "messages-in"],
    ["Messages out", data.total_messages, "messages-out"],
    ["Frames dropped (this node)", data.frames_dropped, "frames-dropped"],
  ];
  const list = document.getElementById("figures");
  list.replaceChildren(
    ...figures.map(([label, value, key]) =>
      el("div", { class: "figure" }, el("dt", { text: label }), el("dd", { "data-figure": key, text: String(value) })),
    ),
  );
  document.getElementById("version").textContent = `version ${data.version} · node ${data.node_id.slice(0, 8)}`;
}

function when(time) {
  return time ? new Date(`${time}Z`).toLocaleString() : "never";
}

// Shown only while webhooks are on (the server sends `webhooks: null` when they are off).
function renderWebhooks(data) {
  const webhooks = data.webhooks;
  document.getElementById("webhooks-section").hidden = !webhooks;
  if (!webhooks) return;
  document.getElementById("webhooks-url").textContent = webhooks.url;
  document.getElementById("webhooks-sender").textContent = webhooks.sending
    ? "this node sends them (the leader)"
    : "another node sends them (the leader)";
  const figures = [
    ["Waiting", `${webhooks.queue_length} of ${webhooks.queue_max}`, "queue"],
    ["Last delivered", when(webhooks.last_delivered_at), "last-delivered"],
    ["Sent (this node)", webhooks.events_sent, "sent"],
    ["Given up (this node)", webhooks.events_dropped, "dropped"],
    ["Dropped, queue full", webhooks.overflowed, "overflowed"],
  ];
  document.getElementById("webhooks").replaceChildren(
    ...figures.map(([label, value, key]) =>
      el("div", { class: "figure" }, el("dt", { text: label }), el("dd", { "data-webhook": key, text: String(value) })),
    ),
  );
  const error = document.getElementById("webhooks-error");
  error.hidden = !webhooks.last_error;
  error.textContent = webhooks.last_error ? `Last error (${when(webhooks.last_error_at)}): ${webhooks.last_error}` : "";
}

function settingsSummary(settings) {
  const on = Object.entries(settings)
    .filter(([key, value]) => value === true && key !== "store_frames")
    .map(([key]) => key);
  const history = settings.store_history ? ` (${settings.history_size})` : "";
  return on.length ? on.join(", ") + history : "defaults";
}

function renderChannels(data) {
  const names = Object.keys(data.channels).sort();
  const body = document.querySelector("#channels tbody");
  body.replaceChildren(
    ...names.map((name) => {
      const channel = data.channels[name];
      const select = el("button", {
        class: "link",
        "data-channel": name,
        text: name,
        onclick: () => {
          state.selectedChannel = state.selectedChannel === name ? null : name;
          renderChannels(state.data);
        },
      });
      return el(
        "tr",
        { class: name === state.selectedChannel ? "selected" : null },
        el("td", { "data-label": "Channel" }, select),
        el("td", { "data-label": "Users", text: String(channel.total_users) }),
        el("td", { "data-label": "Connections", text: String(channel.total_connections) }),
        el("td", { "data-label": "Last active", text: shortTime(channel.last_active) }),
        el("td", { "data-label": "Settings", text: settingsSummary(channel.settings) }),
      );
    }),
  );
  document.getElementById("no-channels").hidden = names.length > 0;
  renderChannelDetail(data);
}

function renderChannelDetail(data) {
  const detail = document.getElementById("channel-detail");
  const channel = state.selectedChannel && data.channels[state.selectedChannel];
  if (!channel) {
    state.selectedChannel = null;
    detail.hidden = true;
    detail.replaceChildren();
    return;
  }
  const key = (part) => `channel:${channel.name}:${part}`;
  detail.hidden = false;
  detail.replaceChildren(
    el("h3", { text: `Channel ${channel.name}` }),
    el(
      "p",
      { class: "muted" },
      `uuid ${channel.uuid} · last active ${shortTime(channel.last_active)} · ` +
        `${count(channel.total_users, "user")} · ${count(channel.total_connections, "connection")}`,
    ),
    el("h4", { text: "Settings" }),
    el("pre", { class: "settings", text: json(channel.settings) }),
    trackedDetails(
      key("history"),
      `History: ${count(channel.history.length, "message")}`,
      channel.history.length
        ? historyTable(channel.history)
        : el("p", { class: "muted", text: "No stored messages." }),
    ),
    trackedDetails(
      key("users"),
      `Users: ${count(channel.users.length, "user")}`,
      channel.users.length
        ? el("ul", {}, ...channel.users.map((user) => el("li", { text: user })))
        : el("p", { class: "muted", text: "No users." }),
    ),
  );
}

async function disconnect(connId, user, button) {
  const question =
    `Disconnect ${user}'s connection ${connId}?\n\n` +
    "Its websocket closes with 1000: a client that follows the protocol does not reconnect.";
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    const response = await fetch(DISCONNECT_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: JSON_HEADERS,
      body: JSON.stringify({ conn_id: connId }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    setStatus(`Connection ${connId} disconnected.`);
  } catch (error) {
    setStatus(`Could not disconnect ${connId}: ${error.message}`, true);
  }
  await refresh();
}

async function disconnectUser(user, button) {
  const question =
    `Disconnect user ${user}?\n\n` +
    "Every connection of theirs ends on every node, with close code 4003: their clients stop " +
    "and do not reconnect.";
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    const response = await fetch(USER_DISCONNECT_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: JSON_HEADERS,
      body: JSON.stringify({ users: [user], reason: "disconnected by an admin" }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const answer = await response.json();
    setStatus(`User ${user} disconnected (${count(answer.disconnected[user] || 0, "connection")}).`);
  } catch (error) {
    setStatus(`Could not disconnect user ${user}: ${error.message}`, true);
  }
  await refresh();
}

function userDisconnectButton(user) {
  const button = el("button", { class: "danger", "data-disconnect-user": user, text: "Disconnect user" });
  button.addEventListener("click", () => disconnectUser(user, button));
  return button;
}

function renderUsers(data) {
  const connections = new Map(data.connections.map((connection) => [connection.conn_id, connection]));
  const body = document.querySelector("#users tbody");
  body.replaceChildren(
    ...data.users.map((user) =>
      el(
        "tr",
        { "data-user": user.user },
        el("td", { "data-label": "User" }, el("span", { text: user.user }), " ", userDisconnectButton(user.user)),
        el("td", { "data-label": "Public state" }, el("pre", { class: "state", text: json(user.state) })),
        el(
          "td",
          { "data-label": "Connections" },
          el(
            "ul",
            { class: "connections" },
            ...user.connections.map((connId) => {
              const connection = connections.get(connId);
              const facts = connection
                ? `${connection.channels.join(", ") || "no channels"} · ${count(connection.listeners, "listener")} · ` +
                  `active ${shortTime(connection.last_active)}`
                : "";
              const button = el("button", {
                class: "danger",
                "data-disconnect": connId,
                text: "Disconnect",
              });
              button.addEventListener("click", () => disconnect(connId, user.user, button));
              return el(
                "li",
                { "data-conn-id": connId },
                el("code", { text: connId }),
                " ",
                el("span", { class: "muted", text: facts }),
                " ",
                button,
              );
            }),
          ),
        ),
      ),
    ),
  );
  document.getElementById("no-users").hidden = data.users.length > 0;
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function refresh() {
  let response;
  try {
    response = await fetch(DATA_URL, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (error) {
    setStatus(`Server unreachable (${error.message}); retrying every ${REFRESH_SECONDS} s.`, true);
    return;
  }
  const type = response.headers.get("Content-Type") || "";
  if (response.redirected || !type.startsWith("application/json")) {
    window.location.assign(SIGN_IN_URL); // the session ended
    return;
  }
  if (!response.ok) {
    setStatus(`The server answered ${response.status}; retrying every ${REFRESH_SECONDS} s.`, true);
    return;
  }
  state.data = await response.json();
  renderFigures(state.data);
  renderWebhooks(state.data);
  renderChannels(state.data);
  renderUsers(state.data);
  setStatus(`Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_SECONDS} s`);
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

async function signOut() {
  try {
    const response = await fetch(SIGN_OUT_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: JSON_HEADERS,
      body: "{}",
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
  } catch (error) {
    setStatus(`Could not sign out: ${error.message}`, true);
    return;
  }
  window.location.assign(SIGN_IN_URL);
}

const signOutButton = document.getElementById("sign-out");
signOutButton.addEventListener("click", signOut);
signOutButton.disabled = false; // usable once it does something (the page loads it disabled)
refresh();
setInterval(refresh, REFRESH_SECONDS * 1000);
