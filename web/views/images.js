// A campaign's cover image (shown, and uploaded by its organiser or an admin)
// and its share link (copied, or handed to the device's share sheet).
import { currentSession } from "../session.js";
import { h, notice } from "../dom.js";

export const IMAGE_FIELDS = "imageUrl imageSrcset";
const ACCEPT = "image/jpeg,image/png,image/webp";

/** The cover image, sized to the page by the browser from its widths. */
export function coverImage(campaign) {
  if (!campaign.imageUrl) return null;
  return h("img", {
    class: "cover",
    src: campaign.imageUrl,
    srcset: campaign.imageSrcset,
    sizes: "(min-width: 56rem) 40rem, 100vw",
    alt: "",
    "data-testid": "cover-image",
  });
}

/** Send a picture for the campaign; answers { imageUrl, imageSrcset } or throws
 * with the server's words for what is wrong with it. */
export async function uploadImage(campaignId, file) {
  const form = new FormData();
  form.append("image", file);
  const token = currentSession()?.token;
  const response = await fetch(`/campaigns/${encodeURIComponent(campaignId)}/image`, {
    method: "POST",
    body: form,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // a proxy's page, say: the status says enough
  }
  if (!response.ok) {
    const message = body?.error || body?.errors?.[0]?.message;
    throw new Error(message || `The upload failed (HTTP ${response.status}).`);
  }
  return body;
}

/** A file input for the cover image, with what it accepts said. */
export function imageInput(id) {
  return h("input", { id, type: "file", accept: ACCEPT, "aria-describedby": `${id}-hint` });
}

export const IMAGE_HINT = "A JPEG, PNG or WebP photo. Its location and camera details are removed before it is shown.";

/** The organiser's (or an admin's) form to set or change the cover image. */
export function imageForm(campaign, onSaved) {
  const input = imageInput("cover-file");
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "secondary" }, campaign.imageUrl ? "Change the image" : "Add the image");
  const form = h("form", { class: "stack image-form", novalidate: true },
    h("div", { class: "field" },
      h("label", { for: "cover-file" }, "Photo"),
      h("p", { class: "hint", id: "cover-file-hint" }, IMAGE_HINT),
      input),
    feedback,
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = input.files[0];
    if (!file) {
      feedback.replaceChildren(notice("error", "Choose a photo first."));
      input.focus();
      return;
    }
    submit.disabled = true;
    feedback.replaceChildren(notice("info", "Uploading…"));
    try {
      const saved = await uploadImage(campaign.id, file);
      Object.assign(campaign, saved);
      onSaved(saved);
      input.value = "";
      submit.textContent = "Change the image";
      feedback.replaceChildren(notice("success", "The image is on the campaign's page."));
    } catch (error) {
      feedback.replaceChildren(notice("error", `Could not use this file: ${error.message}`));
    }
    submit.disabled = false;
  });
  // Open while the campaign has no image yet: a page with a photo gets more help.
  return h("details", { class: "cover-edit", open: !campaign.imageUrl },
    h("summary", {}, "Cover image"), form);
}

/** The campaign's share link: its preview (title, story, image) shows where it is pasted. */
export function shareLink(campaign) {
  return `${location.origin}/c/${encodeURIComponent(campaign.id)}`;
}

async function copy(text) {
  if (navigator.clipboard?.writeText) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Older browsers and plain http: copy from a selected text field.
  const field = h("textarea", { readonly: true, class: "visually-hidden" }, text);
  document.body.append(field);
  field.select();
  const done = document.execCommand("copy");
  field.remove();
  if (!done) throw new Error("copying is not allowed here");
}

/** "Copy link" and "Share" (the device's share sheet where it has one). */
export function shareButtons(campaign) {
  const status = h("span", { class: "share-status muted", role: "status", "data-testid": "share-status" });
  const link = h("input", {
    class: "share-link", readonly: true, value: shareLink(campaign),
    "aria-label": "The campaign's share link", "data-testid": "share-link",
    onfocus: (event) => event.target.select(),
  });
  async function copyLink() {
    try {
      await copy(shareLink(campaign));
      status.textContent = "Link copied.";
    } catch {
      link.focus(); // selected: the person copies it themselves
      status.textContent = "Copy the link from the box.";
    }
  }
  async function share() {
    if (!navigator.share) {
      await copyLink();
      return;
    }
    try {
      await navigator.share({ title: campaign.title, url: shareLink(campaign) });
    } catch (error) {
      if (error.name !== "AbortError") await copyLink();
    }
  }
  return h("div", { class: "share", "aria-label": "Share this campaign", role: "group" },
    h("button", { type: "button", class: "secondary", onclick: copyLink }, "Copy link"),
    h("button", { type: "button", class: "secondary", onclick: share }, "Share"),
    link,
    status);
}
