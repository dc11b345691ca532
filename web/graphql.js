// The API client: GraphQL over HTTP with fetch(), and the graphql-transport-ws
// protocol over a WebSocket for subscriptions. Only /graphql on this server.

/** A refused or failed request, with the message in words and the API's code. */
export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "ApiError";
    this.code = code;
  }
}

export const NETWORK = "NETWORK";

/**
 * POST a document; resolves to `data`, or throws ApiError with the first error's message.
 * `onRenewed(token)` hears of a fresh token the server hands back for an old one
 * (an anonymous session's, renewed while it is used).
 */
export async function request(query, variables = {}, { token = null, signal, onRenewed } = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      "Could not reach CareForAll: the connection dropped. Check your connection and try again.",
      NETWORK,
    );
  }
  const renewed = response.headers.get("X-Renewed-Token");
  if (renewed && token && onRenewed) onRenewed(renewed);
  let body;
  try {
    body = await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    if (response.ok) {
      throw new ApiError("The connection dropped before the answer arrived. Try again.", NETWORK);
    }
    throw new ApiError(
      `The server could not answer (HTTP ${response.status}). Try again in a moment.`,
      `HTTP_${response.status}`,
    );
  }
  if (Array.isArray(body.errors) && body.errors.length) {
    const first = body.errors[0];
    const message = typeof first.message === "string" && first.message
      ? first.message
      : "The request was refused.";
    throw new ApiError(message, first.extensions?.code || "ERROR");
  }
  if (!body.data) throw new ApiError("The server sent an empty answer. Try again.", "EMPTY");
  return body.data;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/graphql`;
}

/**
 * Subscribe with graphql-transport-ws. Reconnects with backoff when the socket
 * drops (the server sends the current value first, so nothing is missed).
 * A browser cannot set headers on a WebSocket, so a `token` goes in the
 * connection_init payload. Returns a function that ends the subscription.
 */
export function subscribe(query, variables, { onData, onError, onStatus, token = null }) {
  const id = "1";
  let socket = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    timer = null;
    socket = new WebSocket(socketUrl(), "graphql-transport-ws");
    socket.addEventListener("open", () => {
      if (stopped) {
        socket.close(1000);
        return;
      }
      send({ type: "connection_init", payload: token ? { Authorization: `Bearer ${token}` } : {} });
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      switch (message.type) {
        case "connection_ack":
          attempt = 0;
          send({ id, type: "subscribe", payload: { query, variables } });
          onStatus?.("live");
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "next":
          if (message.payload?.errors?.length) {
            onError?.(new ApiError(message.payload.errors[0].message, "SUBSCRIPTION"));
          } else if (message.payload?.data) {
            onData(message.payload.data);
          }
          break;
        case "error": {
          const first = Array.isArray(message.payload) ? message.payload[0] : null;
          stopped = true;
          onError?.(new ApiError(first?.message || "Live updates were refused.", "SUBSCRIPTION"));
          socket.close(1000);
          break;
        }
        default:
          break;
      }
    });
    socket.addEventListener("close", () => {
      if (stopped) return;
      onStatus?.("reconnecting");
      const delay = Math.min(10000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
      attempt += 1;
      timer = setTimeout(connect, delay);
    });
  }

  connect();
  return function unsubscribe() {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (socket && socket.readyState === WebSocket.OPEN) {
      send({ id, type: "complete" });
      socket.close(1000);
    }
    // A socket still connecting is closed by its "open" handler, which avoids
    // the browser's "closed before the connection is established" error.
  };
}
