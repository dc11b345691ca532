"""Campaign cover images: an upload decoded and re-encoded with Pillow (every
piece of metadata dropped: a medical photo must never carry its GPS position),
in a few widths named by a hash of the picture, and set on the campaign."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlmodel import Session, col, select

from careforall.domain.clock import utcnow
from careforall.domain.errors import (
    BadUserInput,
    InvalidTransition,
)
from careforall.domain.events import CampaignEdited
from careforall.domain.rules import (
    Principal,
    require_user,
)
from careforall.domain.states import CampaignStatus
from careforall.media import MediaStore
from careforall.models import Campaign, CampaignEdit
from careforall.services import audit
from careforall.services.campaigns import locked_campaign, reachable_campaign
from careforall.services.unit_of_work import UnitOfWork

# The widths kept (a phone's card, the campaign page, a large screen and
# share previews); a smaller picture is never enlarged, but every width has
# its file so its address can be written without asking.
WIDTHS = (320, 800, 1600)
SHOWN_WIDTH = 800
# Past this, decoding alone costs hundreds of megabytes (a decompression
# bomb is a small file that claims a huge picture).
MAX_PIXELS = 40_000_000
ACCEPTED = ("JPEG", "PNG", "WEBP")
# JPEG: what every browser and every link preview (chats, social networks) shows.
EXTENSION = "jpg"
QUALITY = 85
TOO_MANY_PIXELS = f"the largest accepted is {MAX_PIXELS // 1_000_000} megapixels."
UNREADABLE = "The file is not an image we can read: send a JPEG, PNG or WebP."
# A file no campaign shows (its image was replaced) is deleted once it is
# this old: an upload puts its files a moment before the campaign names them.
UNUSED_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class CoverImage:
    """A cleaned picture: its key (the hash) and its files by name."""

    key: str
    files: dict[str, bytes]


def media_name(key: str, width: int) -> str:
    return f"{key}-{width}.{EXTENSION}"


def image_url(key: str, width: int = SHOWN_WIDTH) -> str:
    """Where the app serves a width of the image (a path on this server)."""
    return f"/media/{media_name(key, width)}"


def image_srcset(key: str) -> str:
    return ", ".join(f"{image_url(key, width)} {width}w" for width in WIDTHS)


def too_large(size: int, max_bytes: int) -> BadUserInput:
    return BadUserInput(
        f"The image is {size / 1_048_576:.1f} MB; the largest accepted is "
        f"{max_bytes / 1_048_576:.1f} MB."
    )


def _decoded(data: bytes) -> Image.Image:
    """The picture, upright, as plain RGB pixels with nothing else kept."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (then raises) on pictures larger than its own limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED) as probe:
                width, height = probe.size  # read from the header, not decoded
                if width * height > MAX_PIXELS:
                    raise BadUserInput(
                        f"The image is {width}×{height} pixels; {TOO_MANY_PIXELS}"
                    )
                probe.verify()
            with Image.open(io.BytesIO(data), formats=ACCEPTED) as image:
                image.seek(0)  # an animation's first frame
                upright = ImageOps.exif_transpose(image)
                rgb = _flattened(upright)
    except BadUserInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadUserInput(
            f"The image has too many pixels; {TOO_MANY_PIXELS}"
        ) from None
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,  # Pillow's word for some broken files
        ValueError,
        EOFError,
    ):
        raise BadUserInput(UNREADABLE) from None
    # A new image from the pixels alone: no EXIF, GPS, XMP, ICC or comments.
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def _flattened(image: Image.Image) -> Image.Image:
    """RGB; transparency goes onto white (JPEG has none)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _encoded(picture: Image.Image, width: int) -> bytes:
    if picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=QUALITY, optimize=True, progressive=True)
    return out.getvalue()


def prepare_image(data: bytes, *, max_bytes: int) -> CoverImage:
    """Check and clean an upload; BadUserInput says what is wrong with it.
    CPU-bound: call it off the event loop."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    if not data:
        raise BadUserInput("The image is empty: choose a JPEG, PNG or WebP file.")
    picture = _decoded(data)
    digest = hashlib.sha256(f"{picture.size}".encode())
    digest.update(picture.tobytes())
    key = digest.hexdigest()[:32]
    return CoverImage(
        key=key, files={media_name(key, w): _encoded(picture, w) for w in WIDTHS}
    )


def check_may_set_image(
    session: Session, *, principal: Principal | None, campaign_id: str
) -> None:
    """Refuse before any work is done for someone who may not change the
    campaign's image (the write checks again, under the row's lock)."""
    actor = require_user(principal)
    found = session.get(Campaign, campaign_id)
    campaign = reachable_campaign(actor, found, manage=True)
    if campaign.status == CampaignStatus.CLOSED:
        raise InvalidTransition("A CLOSED campaign cannot be edited.")


def set_campaign_image(
    uow: UnitOfWork, *, principal: Principal | None, campaign_id: str, image_key: str
) -> Campaign:
    """The organiser or an admin sets the campaign's cover image (its files
    are stored first); kept in the edit history like any other field."""
    actor = require_user(principal)
    with uow:
        campaign = locked_campaign(uow, actor, campaign_id, manage=True)
        if campaign.status == CampaignStatus.CLOSED:
            raise InvalidTransition("A CLOSED campaign cannot be edited.")
        if campaign.image_key == image_key:
            return campaign
        now = utcnow()
        uow.session.add(
            CampaignEdit(
                campaign_id=campaign.id,
                actor_user_id=actor.id,
                at=now,
                field="image",
                old_value=campaign.image_key,
                new_value=image_key,
            )
        )
        campaign.image_key = image_key
        campaign.updated_at = now
        uow.session.add(campaign)
        uow.emit(
            CampaignEdited(campaign_id=campaign.id, actor_id=actor.id, fields="image")
        )
        if actor.is_admin and actor.id != campaign.owner_id:
            audit.record(
                uow,
                actor=actor,
                action="update_campaign",
                target_type="campaign",
                target_id=campaign.id,
                detail={"fields": ["image"]},
            )
        uow.commit()
    return campaign


def sweep_unused_images(
    uow: UnitOfWork, media: MediaStore, *, now: datetime | None = None
) -> int:
    """Delete the stored files of images no campaign shows any more, once
    they are `UNUSED_KEPT` old; returns how many files went. The edit
    history keeps the replaced image's key, not its files."""
    cutoff = (now or utcnow()) - UNUSED_KEPT
    with uow.db.read() as session:
        shown = select(Campaign.image_key).where(col(Campaign.image_key).is_not(None))
        in_use = set(session.exec(shown.distinct()).all())
    deleted = 0
    for name, put_at in media.stored():
        key = name.partition("-")[0]
        if key not in in_use and put_at < cutoff:
            media.delete(name)
            deleted += 1
    return deleted
