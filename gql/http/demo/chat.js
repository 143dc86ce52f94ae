// The customer's chat widget: opens the chat, pages older messages, sends with a
// clientMessageId (shown at once, replaced by the stored message; a failed send can be retried
// with the same id, so it is stored once) and shows new messages live, and whether the
// conversation is resolved (writing opens it again), kept live by conversationUpdated.

import { h, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

import { newId, request, settings, socket, subscribe, time } from "./helpline.js";

const html = htm.bind(h);
const config = settings();
const PAGE = 20;
const MESSAGE = "id content createdAt clientMessageId sender { id name }";
const OPEN = `mutation OpenChat {
  adminConversation { conversation { id status admin { name }
    messages(first: ${PAGE}) { edges { node { ${MESSAGE} } } pageInfo { hasNextPage endCursor } } } }
}`;
const OLDER = `query Older($id: UUID!, $after: String) { conversation(id: $id) {
  messages(first: ${PAGE}, after: $after) { edges { node { ${MESSAGE} } } pageInfo { hasNextPage endCursor } } } }`;
const SEND = `mutation Send($id: UUID!, $content: String!, $key: String) {
  sendMessage(conversationId: $id, content: $content, clientMessageId: $key) { ${MESSAGE} } }`;
const LIVE = `subscription Live($id: UUID!) { messageAdded(conversationId: $id) { ${MESSAGE} } }`;
const UPDATED = `subscription Status($id: UUID!) {
  conversationUpdated(conversationId: $id) { id status admin { name } } }`;

// Messages are kept oldest first; a stored message replaces the copy shown while sending.
function merged(messages, message) {
  if (messages.some((m) => m.id === message.id)) return messages;
  const sending = messages.findIndex(
    (m) => !m.id && m.clientMessageId && m.clientMessageId === message.clientMessageId,
  );
  if (sending >= 0) return messages.map((m, i) => (i === sending ? message : m));
  return [...messages, message];
}

function Widget() {
  const [chat, setChat] = useState(null);
  const [messages, setMessages] = useState([]);
  const [older, setOlder] = useState(null); // the cursor of older messages, if any
  const [problem, setProblem] = useState(config.token ? null : "Add #token=<jwt> to the URL.");
  const [draft, setDraft] = useState("");
  const [status, setStatus] = useState(null);
  const list = useRef(null);

  useEffect(() => {
    if (!config.token) return undefined;
    let stop = () => {};
    let stopUpdates = () => {};
    request(config, OPEN)
      .then(({ adminConversation: { conversation } }) => {
        setChat(conversation);
        setStatus(conversation.status);
        setMessages(conversation.messages.edges.map((e) => e.node).reverse());
        const page = conversation.messages.pageInfo;
        setOlder(page.hasNextPage ? page.endCursor : null);
        stop = subscribe(
          socket(config),
          LIVE,
          { id: conversation.id },
          ({ messageAdded }) => setMessages((shown) => merged(shown, messageAdded)),
          (error) => setProblem(`Live updates stopped: ${error.message || error.reason || error}`),
        );
        stopUpdates = subscribe(
          socket(config),
          UPDATED,
          { id: conversation.id },
          ({ conversationUpdated }) => setStatus(conversationUpdated.status),
          (error) => setProblem(`Live updates stopped: ${error.message || error.reason || error}`),
        );
      })
      .catch((error) => setProblem(`The chat could not open: ${error.message}`));
    return () => {
      stop();
      stopUpdates();
    };
  }, []);

  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [messages.length]);

  async function loadOlder() {
    const data = await request(config, OLDER, { id: chat.id, after: older });
    const page = data.conversation.messages;
    setMessages((shown) => [...page.edges.map((e) => e.node).reverse(), ...shown]);
    setOlder(page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null);
  }

  async function send(content, clientMessageId) {
    const sending = { clientMessageId, content, sender: { id: config.me }, sending: true };
    setMessages((shown) => [
      ...shown.filter((m) => m.id || m.clientMessageId !== clientMessageId),
      sending,
    ]);
    try {
      const data = await request(config, SEND, { id: chat.id, content, key: clientMessageId });
      setMessages((shown) => merged(shown, data.sendMessage));
      setStatus("OPEN"); // the customer's message opens a resolved or snoozed conversation
    } catch (error) {
      setMessages((shown) =>
        shown.map((m) =>
          !m.id && m.clientMessageId === clientMessageId
            ? { ...m, sending: false, failed: error.message }
            : m,
        ),
      );
    }
  }

  function submit(event) {
    event.preventDefault();
    const content = draft.trim();
    if (!content || !chat) return;
    setDraft("");
    send(content, newId());
  }

  return html`
    <main class="widget">
      <header>
        ${chat
          ? html`Chat with <strong data-testid="admin-name">${chat.admin.name}</strong>`
          : "Helpline"}
      </header>
      ${problem && html`<p class="problem" role="alert">${problem}</p>`}
      ${status &&
      html`<p class="status" data-testid="conversation-status" data-status=${status}>${status}</p>`}
      ${status === "RESOLVED" &&
      html`<p class="resolved" data-testid="resolved-note">
        This conversation was resolved. Write to open it again.
      </p>`}
      <ol class="messages" ref=${list}>
        ${older &&
        html`<li class="older">
          <button data-testid="older-button" onClick=${loadOlder}>Older messages</button>
        </li>`}
        ${messages.map(
          (m) => html`
            <li
              data-testid="message"
              key=${m.id || m.clientMessageId}
              class=${`message ${m.sender.id === config.me ? "mine" : "theirs"}`}
              data-state=${m.failed ? "failed" : m.sending ? "sending" : "stored"}
              data-client-message-id=${m.clientMessageId || ""}
            >
              <p class="content">${m.content}</p>
              <small>
                ${m.sender.name || "You"} · ${m.createdAt ? time(m.createdAt) : "sending…"}
              </small>
              ${m.failed &&
              html`<p class="failed" role="alert" data-testid="send-error">
                Not sent: ${m.failed}
                <button data-testid="retry-button" onClick=${() => send(m.content, m.clientMessageId)}>
                  Retry
                </button>
              </p>`}
            </li>
          `,
        )}
      </ol>
      <form onSubmit=${submit}>
        <input
          data-testid="message-input"
          aria-label="Message"
          placeholder="Write a message…"
          value=${draft}
          onInput=${(e) => setDraft(e.target.value)}
        />
        <button data-testid="send-button" disabled=${!chat}>Send</button>
      </form>
    </main>
  `;
}

render(html`<${Widget} />`, document.getElementById("app"));
