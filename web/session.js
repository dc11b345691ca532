// Who is using this browser: a signed-in account, an anonymous (guest) session,
// or nobody yet. The token is kept in localStorage so a guest's donations stay
// theirs across visits, and move to their account when they register or sign in.
import { ApiError, request } from "./graphql.js";

const STORAGE_KEY = "careforall.session";
const listeners = new Set();

const START_ANONYMOUS = `mutation StartAnonymousSession {
  startAnonymousSession { token anonymous user { id } }
}`;
const ME = `query Me { me { id } }`;
const LOGOUT = `mutation Logout { logout }`;

/** { token, anonymous, user: {id, name, email, role} | null } or null. */
export function currentSession() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY));
    return value && typeof value.token === "string" ? value : null;
  } catch {
    return null;
  }
}

export function currentUser() {
  const session = currentSession();
  return session && !session.anonymous ? session.user : null;
}

/** The anonymous session's token, to hand to register/login so its donations move. */
export function anonymousToken() {
  const session = currentSession();
  return session && session.anonymous ? session.token : null;
}

export function saveSession(payload) {
  const session = { token: payload.token, anonymous: payload.anonymous, user: payload.user || null };
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  changed();
}

/** The signed-in user's new name or email, kept with the same token. */
export function updateUser(user) {
  const session = currentSession();
  if (!session || session.anonymous) return;
  const kept = { ...session.user };
  for (const key of ["name", "email"]) if (typeof user[key] === "string") kept[key] = user[key];
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...session, user: kept }));
  changed();
}

export function signOut() {
  localStorage.removeItem(STORAGE_KEY);
  changed();
}

/** End the token on the server too (best effort: offline, it simply lapses). */
export async function signOutEverywhere() {
  const session = currentSession();
  signOut();
  if (!session) return;
  try {
    await request(LOGOUT, {}, { token: session.token });
  } catch (error) {
    // Already ended, or unreachable: the browser has forgotten it either way.
    if (!(error instanceof ApiError)) throw error;
  }
}

/** Keep the renewed token, unless the session changed meanwhile. */
function renew(sent, token) {
  const session = currentSession();
  if (!session || session.token !== sent) return;
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...session, token }));
}

export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  for (const listener of listeners) listener(currentSession());
}

// Another tab signed in or out.
window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY || event.key === null) changed();
});

/** Make sure there is a token: start an anonymous session for a guest. */
export async function ensureSession() {
  const session = currentSession();
  if (session) return session;
  const data = await request(START_ANONYMOUS);
  saveSession(data.startAnonymousSession);
  return currentSession();
}

/**
 * A request with this browser's token. When the token itself is no longer
 * valid (expired, or the server's data was reset), it is forgotten, so the next
 * step starts afresh; the error still reaches the caller.
 */
export async function api(query, variables = {}, { signal } = {}) {
  const session = currentSession();
  try {
    return await request(query, variables, {
      token: session?.token,
      signal,
      onRenewed: (token) => renew(session.token, token),
    });
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED" && session) {
      await forgetIfInvalid(session);
    }
    throw error;
  }
}

async function forgetIfInvalid(session) {
  try {
    await request(ME, {}, { token: session.token });
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED") {
      if (currentSession()?.token === session.token) signOut();
    }
  }
}
