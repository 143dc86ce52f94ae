// The admin's console: the inbox, newest activity first with unread counts and how long each
// waiting customer has waited, in tabs by status (Open, Snoozed, Resolved), kept live by
// inboxUpdated; opening a conversation shows its messages live, marks it read and lets the
// admin reply, resolve, snooze or reopen it, or hand it over to another admin. Nothing is
// opened by itself.

import { h, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

import { newId, request, settings, socket, subscribe, time } from "./helpline.js";

const html = htm.bind(h);
const config = settings();
const ITEM = `id unreadCount lastMessage { content }
  conversation { id lastMessageAt status waitingSince snoozedUntil customer { name } admin { id name } }`;
const STATUSES = [
  ["OPEN", "Open"],
  ["SNOOZED", "Snoozed"],
  ["RESOLVED", "Resolved"],
];
const SNOOZES = [
  ["1h", "1 hour", () => new Date(Date.now() + 3600e3)],
  ["4h", "4 hours", () => new Date(Date.now() + 4 * 3600e3)],
  ["tomorrow", "Tomorrow 9:00", () => {
    const at = new Date();
    at.setDate(at.getDate() + 1);
    at.setHours(9, 0, 0, 0);
    return at;
  }],
];
const CHANGED = "id status snoozedUntil resolvedAt waitingSince";
const MESSAGE = "id content createdAt clientMessageId sender { id name }";
const INBOX = `query Inbox { inbox(first: 50) { edges { node { ${ITEM} } } } admins { id name } }`;
const INBOX_UPDATED = `subscription Inbox { inboxUpdated { ${ITEM} } }`;
const CONVERSATION = `query Open($id: UUID!) { conversation(id: $id) {
  id customer { name } messages(first: 50) { edges { node { ${MESSAGE} } } } } }`;
const LIVE = `subscription Live($id: UUID!) { messageAdded(conversationId: $id) { ${MESSAGE} } }`;
const MARK_READ = `mutation Read($id: UUID!) { markRead(conversationId: $id) { ${ITEM} } }`;
const SEND = `mutation Reply($id: UUID!, $content: String!, $key: String) {
  sendMessage(conversationId: $id, content: $content, clientMessageId: $key) { ${MESSAGE} } }`;
const ASSIGN = `mutation HandOver($id: UUID!, $admin: UUID!) {
  assignConversation(conversationId: $id, adminId: $admin) { id admin { id name } } }`;
const RESOLVE = `mutation Resolve($id: UUID!) { resolveConversation(conversationId: $id) { ${CHANGED} } }`;
const SNOOZE = `mutation Snooze($id: UUID!, $until: DateTime!) {
  snoozeConversation(conversationId: $id, until: $until) { ${CHANGED} } }`;
const REOPEN = `mutation Reopen($id: UUID!) { reopenConversation(conversationId: $id) { ${CHANGED} } }`;

function waited(since) {
  const minutes = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 60000));
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const client = config.token ? socket(config) : null;

function newestFirst(items) {
  return Object.values(items).sort((a, b) =>
    b.conversation.lastMessageAt.localeCompare(a.conversation.lastMessageAt),
  );
}

function Console() {
  const [items, setItems] = useState({});
  const [admins, setAdmins] = useState([]);
  const [open, setOpen] = useState(null); // {id, customer, messages}
  const [tab, setTab] = useState("OPEN");
  const [problem, setProblem] = useState(config.token ? null : "Add #token=<jwt> to the URL.");
  const openId = useRef(null);
  const report = (error) => setProblem(error.message || error.reason || String(error));

  function upsert(item) {
    setItems((shown) => ({ ...shown, [item.id]: item }));
  }

  async function markRead(id) {
    upsert((await request(config, MARK_READ, { id })).markRead);
  }

  useEffect(() => {
    if (!client) return undefined;
    request(config, INBOX)
      .then((data) => {
        setItems(Object.fromEntries(data.inbox.edges.map((e) => [e.node.id, e.node])));
        setAdmins(data.admins);
      })
      .catch(report);
    return subscribe(client, INBOX_UPDATED, {}, ({ inboxUpdated }) => {
      upsert(inboxUpdated);
      // the conversation on screen is being read: it stays read
      if (inboxUpdated.id === openId.current && inboxUpdated.unreadCount > 0) {
        markRead(inboxUpdated.id).catch(report);
      }
    }, report);
  }, []);

  useEffect(() => {
    if (!open) return undefined;
    return subscribe(client, LIVE, { id: open.id }, ({ messageAdded }) => {
      setOpen((shown) =>
        shown && shown.id === open.id && !shown.messages.some((m) => m.id === messageAdded.id)
          ? { ...shown, messages: [...shown.messages, messageAdded] }
          : shown,
      );
    }, report);
  }, [open && open.id]);

  async function show(id) {
    // subscribe first (the effect below), then read: nothing sent in between is missed
    openId.current = id;
    setOpen({ id, customer: items[id] ? items[id].conversation.customer : { name: "" }, messages: [] });
    const { conversation } = await request(config, CONVERSATION, { id });
    const read = conversation.messages.edges.map((e) => e.node);
    setOpen((shown) => {
      if (!shown || shown.id !== id) return shown;
      const byId = new Map([...read, ...shown.messages].map((m) => [m.id, m]));
      const messages = [...byId.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
      return { ...shown, customer: conversation.customer, messages };
    });
    await markRead(id);
  }

  async function reply(content) {
    const { sendMessage } = await request(config, SEND, { id: open.id, content, key: newId() });
    setOpen((shown) =>
      shown.messages.some((m) => m.id === sendMessage.id)
        ? shown
        : { ...shown, messages: [...shown.messages, sendMessage] },
    );
  }

  async function changeStatus(query, variables) {
    const data = await request(config, query, { id: open.id, ...variables });
    const changed = Object.values(data)[0];
    setItems((shown) => {
      const item = shown[changed.id];
      if (!item) return shown;
      return { ...shown, [item.id]: { ...item, conversation: { ...item.conversation, ...changed } } };
    });
  }

  async function handOver(adminId) {
    const { assignConversation } = await request(config, ASSIGN, { id: open.id, admin: adminId });
    setItems((shown) => {
      const item = shown[assignConversation.id];
      if (!item) return shown;
      const conversation = { ...item.conversation, admin: assignConversation.admin };
      return { ...shown, [item.id]: { ...item, conversation } };
    });
  }

  const current = open && items[open.id];
  return html`
    <main class="console">
      <section class="inbox">
        <h1>Inbox</h1>
        ${problem && html`<p class="problem" role="alert">${problem}</p>`}
        <nav class="tabs">
          ${STATUSES.map(
            ([status, label]) => html`
              <button data-testid="status-filter" data-status=${status} key=${status}
                      class=${tab === status ? "selected" : ""} onClick=${() => setTab(status)}>
                ${label}
              </button>
            `,
          )}
        </nav>
        <ul>
          ${newestFirst(items).filter((item) => item.conversation.status === tab).map(
            (item) => html`
              <li
                data-testid="inbox-item"
                data-conversation-id=${item.id}
                key=${item.id}
                class=${open && open.id === item.id ? "selected" : ""}
                onClick=${() => show(item.id).catch(report)}
              >
                <strong>${item.conversation.customer.name}</strong>
                <span data-testid="unread-count" class=${item.unreadCount ? "unread" : "read"}
                  >${item.unreadCount}</span
                >
                <p>${item.lastMessage ? item.lastMessage.content : ""}</p>
                <small data-testid="assigned-to">${item.conversation.admin.name}</small>
                ${item.conversation.waitingSince &&
                html`<small data-testid="waiting-since" data-since=${item.conversation.waitingSince}
                  >waiting ${waited(item.conversation.waitingSince)}</small
                >`}
              </li>
            `,
          )}
        </ul>
      </section>
      <section class="conversation">
        ${open
          ? html`<${Conversation}
              conversation=${open}
              assignedTo=${current && current.conversation.admin}
              status=${current && current.conversation.status}
              admins=${admins}
              onResolve=${() => changeStatus(RESOLVE).catch(report)}
              onSnooze=${(until) => changeStatus(SNOOZE, { until: until.toISOString() }).catch(report)}
              onReopen=${() => changeStatus(REOPEN).catch(report)}
              onReply=${(text) => reply(text).catch(report)}
              onHandOver=${(admin) => handOver(admin).catch(report)}
            />`
          : html`<p class="empty">Open a conversation from the inbox.</p>`}
      </section>
    </main>
  `;
}

function Conversation({
  conversation, assignedTo, status, admins, onReply, onHandOver, onResolve, onSnooze, onReopen,
}) {
  const [draft, setDraft] = useState("");
  const [target, setTarget] = useState("");
  const list = useRef(null);
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [conversation.messages.length]);

  function submit(event) {
    event.preventDefault();
    const content = draft.trim();
    if (!content) return;
    setDraft("");
    onReply(content);
  }

  return html`
    <header>
      <h2>${conversation.customer.name}</h2>
      <p>
        <span data-testid="conversation-status" data-status=${status || ""}>${status}</span>
        ${status !== "RESOLVED" &&
        html`<button data-testid="resolve-button" onClick=${onResolve}>Resolve</button>`}
        ${status !== "SNOOZED" &&
        SNOOZES.map(
          ([preset, label, until]) => html`
            <button data-testid="snooze-button" data-preset=${preset} key=${preset}
                    onClick=${() => onSnooze(until())}>Snooze ${label}</button>
          `,
        )}
        ${status !== "OPEN" &&
        html`<button data-testid="reopen-button" onClick=${onReopen}>Reopen</button>`}
      </p>
      <label>
        Assigned to <span data-testid="conversation-admin">${assignedTo && assignedTo.name}</span>;
        hand over to
        <select data-testid="assign-select" value=${target} onChange=${(e) => setTarget(e.target.value)}>
          <option value="">…</option>
          ${admins
            .filter((a) => !assignedTo || a.id !== assignedTo.id)
            .map((a) => html`<option value=${a.id}>${a.name}</option>`)}
        </select>
        <button data-testid="assign-button" disabled=${!target} onClick=${() => { onHandOver(target); setTarget(""); }}>
          Hand over
        </button>
      </label>
    </header>
    <ol class="messages" ref=${list}>
      ${conversation.messages.map(
        (m) => html`
          <li data-testid="message" key=${m.id}
              class=${`message ${m.sender.id === config.me ? "mine" : "theirs"}`}>
            <p class="content">${m.content}</p>
            <small>${m.sender.name} · ${time(m.createdAt)}</small>
          </li>
        `,
      )}
    </ol>
    <form onSubmit=${submit}>
      <input data-testid="reply-input" aria-label="Reply" placeholder="Reply…" value=${draft}
             onInput=${(e) => setDraft(e.target.value)} />
      <button data-testid="reply-send">Send</button>
    </form>
  `;
}

render(html`<${Console} />`, document.getElementById("app"));
