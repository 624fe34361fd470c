//! Typed parsing of the bodies Meta POSTs to the WhatsApp Cloud API webhook.
//!
//! [`parse`] turns one POST body into a [`Delivery`]: every inbound message, status update,
//! change-level error and contact of every entry and change, plus the changes of other webhook
//! fields kept raw. The rules:
//!
//! - Strict where a mistake would hurt: the envelope must be
//!   `{"object": "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}`,
//!   and each message or status needs an `id` and a unix-seconds `timestamp`. Anything else is a
//!   [`ParseError`], and the caller keeps the raw body as a dead letter.
//! - Lenient where Meta is lenient: unknown JSON fields are ignored, an unknown message `type`
//!   (or a known one without its payload object) becomes [`MessageKind::Unsupported`], and other
//!   webhook fields land in [`Delivery::other_fields`].
//!
//! Nothing here touches the signature: check the HMAC over the raw bytes before calling
//! [`parse`].

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// The only `object` value WhatsApp webhooks carry; anything else was meant for another product.
const OBJECT: &str = "whatsapp_business_account";

/// Parses one webhook POST body.
///
/// Entries, changes, messages and statuses keep the order they had in the body, so a consumer
/// that cares about per-sender order can rely on it within one delivery. NUL characters
/// (`\u0000`), which PostgreSQL cannot store in text or JSON and which mean nothing in a chat,
/// are removed from every string and key first, so such a message is still answered.
pub fn parse(body: &[u8]) -> Result<Delivery, ParseError> {
    let mut root: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson {
        reason: e.to_string(),
    })?;
    strip_nul(&mut root);
    match root.get("object") {
        Some(Value::String(object)) if object == OBJECT => {}
        found => {
            return Err(ParseError::WrongObject {
                found: describe_object(found),
            })
        }
    }
    let envelope: RawEnvelope =
        serde_json::from_value(root).map_err(|e| ParseError::BadEnvelope { reason: redact(&e) })?;

    let mut delivery = Delivery::default();
    for (entry, raw_entry) in envelope.entry.into_iter().enumerate() {
        for (change, raw_change) in raw_entry.changes.into_iter().enumerate() {
            let at = Position { entry, change };
            if raw_change.field == "messages" {
                read_messages_change(raw_change.value, at, &mut delivery)?;
            } else {
                delivery.other_fields.push(OtherField {
                    field: raw_change.field,
                    value: raw_change.value,
                });
            }
        }
    }
    Ok(delivery)
}

/// Why a body was refused. The text names the part that was wrong (and the Meta id of the
/// message or status, when there is one) but never repeats what a user wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON at all: truncated, not UTF-8, or not meant for us.
    #[error("body is not JSON: {reason}")]
    NotJson {
        /// serde_json's syntax error: a position, never content.
        reason: String,
    },
    /// The top-level `object` is missing or is not `whatsapp_business_account` (for example a
    /// Page or Instagram webhook pointed at the wrong URL).
    #[error("`object` is {found}, expected \"whatsapp_business_account\"")]
    WrongObject {
        /// What was there instead, shortened.
        found: String,
    },
    /// `entry[].changes[].field/value` is missing or has the wrong shape.
    #[error("envelope is not {{object, entry: [{{changes: [{{field, value}}]}}]}}: {reason}")]
    BadEnvelope {
        /// serde_json's complaint, with quoted values blanked out.
        reason: String,
    },
    /// The `value` of a `messages` change has the wrong shape, or lacks the
    /// `metadata.phone_number_id` that tells us which of our numbers was written to.
    #[error("entry {entry} change {change} (messages): {reason}")]
    BadChange {
        /// Index of the entry in `entry[]`.
        entry: usize,
        /// Index of the change in that entry's `changes[]`.
        change: usize,
        /// What was wrong, with quoted values blanked out.
        reason: String,
    },
    /// A message or status without an `id` cannot be deduplicated or answered.
    #[error("entry {entry} change {change}: a {what} has no `id`")]
    MissingId {
        /// `"message"` or `"status"`.
        what: &'static str,
        /// Index of the entry in `entry[]`.
        entry: usize,
        /// Index of the change in that entry's `changes[]`.
        change: usize,
    },
    /// A message or status whose `timestamp` is missing or not unix seconds: without it the
    /// backlog check ("is this a week-old question?") cannot work.
    #[error("{what} {id}: `timestamp` is missing or not unix seconds")]
    BadTimestamp {
        /// `"message"` or `"status"`.
        what: &'static str,
        /// The Meta id (wamid) of the message or status.
        id: String,
    },
    /// A message or status whose fields have the wrong type, e.g. a `location` without
    /// coordinates or a media object without `id`.
    #[error("{what} {id}: {reason}")]
    BadItem {
        /// `"message"` or `"status"`.
        what: &'static str,
        /// The Meta id (wamid) of the message or status.
        id: String,
        /// serde_json's complaint, with quoted values blanked out.
        reason: String,
    },
}

/// Removes NUL characters from every string and object key of `value`, in place.
fn strip_nul(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => text.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', ""), v))
                    .collect();
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

impl Delivery {
    /// One delivery per message, then one with the statuses (and nothing else), in body
    /// order: what is stored one by one when the database refuses the whole.
    pub fn split(self) -> Vec<Delivery> {
        let mut parts: Vec<Delivery> = self
            .messages
            .into_iter()
            .map(|message| Delivery {
                messages: vec![message],
                contacts: self.contacts.clone(),
                ..Delivery::default()
            })
            .collect();
        if !self.statuses.is_empty() {
            parts.push(Delivery {
                statuses: self.statuses,
                ..Delivery::default()
            });
        }
        parts
    }
}

/// Everything one webhook POST carried, flattened across entries and changes in body order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Messages users sent to one of our numbers: the reason the hub exists.
    pub messages: Vec<InboundMessage>,
    /// What happened to messages we sent; the outbox settles its records on these.
    pub statuses: Vec<StatusUpdate>,
    /// Change-level `value.errors[]`: Meta could not deliver something to us (e.g. 131000
    /// "Unsupported webhook payload"), so the log should say so.
    pub errors: Vec<ApiError>,
    /// Every `contacts[]` entry of the `messages` changes; identity uses them to link a phone
    /// number, a BSUID and an identity key hash.
    pub contacts: Vec<Contact>,
    /// Changes for any field other than `messages`, kept raw to be logged and acknowledged.
    pub other_fields: Vec<OtherField>,
}

/// A change for a webhook field the hub does not act on: template status and quality,
/// `account_update`, `phone_number_quality_update`, `security`, `user_preferences`, `calls`,
/// `smb_message_echoes` and whatever Meta adds next.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherField {
    /// The subscribed field name, e.g. `message_template_status_update`; what the log groups by.
    pub field: String,
    /// The change's `value`, untouched, so nothing is lost if we start caring later.
    pub value: Value,
}

/// One `value.contacts[]` entry: who the sender (or status recipient) is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The user's WhatsApp id (phone digits); absent for users seen only by BSUID.
    pub wa_id: Option<String>,
    /// Business-scoped user id (BSUID): stable for our business even without a phone number.
    pub user_id: Option<String>,
    /// The BSUID at the parent (business portfolio) level, when Meta sends one.
    pub parent_user_id: Option<String>,
    /// `profile.name`: what the user calls themselves; shown to operators, never trusted.
    pub profile_name: Option<String>,
    /// `profile.username`: the user's WhatsApp username, when they have one.
    pub username: Option<String>,
    /// Changes when the user's device (identity key) changes; only sent when the identity
    /// change check is on. The hub's "new device" signal.
    pub identity_key_hash: Option<String>,
}

/// One message a user sent to one of our business numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Meta's message id (usually `wamid.…`): the deduplication key, since Meta retries.
    pub wamid: String,
    /// `metadata.phone_number_id` of the change: which of our numbers was written to, and so
    /// which one must answer.
    pub phone_number_id: String,
    /// The sender's wa_id (phone digits); absent when Meta sends only a BSUID.
    pub from: Option<String>,
    /// The sender's BSUID.
    pub from_user_id: Option<String>,
    /// The sender's parent (portfolio-level) BSUID, when Meta sends one.
    pub from_parent_user_id: Option<String>,
    /// The sender's profile name, joined from the change's `contacts[]`.
    pub profile_name: Option<String>,
    /// The sender's identity key hash: from the change's `contacts[]`, or else from the
    /// message-level `identity.hash` of the older `customer_identity_changed` shape.
    pub identity_key_hash: Option<String>,
    /// When the user sent it (Meta sends unix seconds as a string); old ones arrive after an
    /// outage and must not be answered as if new.
    pub timestamp: DateTime<Utc>,
    /// The wamid this message replies to (`context.id`).
    pub context_wamid: Option<String>,
    /// The catalog product the user asked about from a product page (`context.referred_product`).
    pub referred_product: Option<ReferredProduct>,
    /// The Click-to-WhatsApp ad that started the chat (`referral`), kept raw: the hub only logs it.
    pub referral: Option<Value>,
    /// What the message is.
    pub kind: MessageKind,
    /// The message object exactly as Meta sent it, kept with the inbox row for audits and for
    /// later stages that need a field this type does not surface.
    pub raw: Value,
}

/// The product a "Message business" tap on a catalog item points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferredProduct {
    /// The catalog the product belongs to.
    pub catalog_id: Option<String>,
    /// The business's own id (SKU) of the product.
    pub product_retailer_id: Option<String>,
}

/// What an inbound message is, by Meta's `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    /// Plain text.
    Text {
        /// What the user typed.
        body: String,
    },
    /// A tap on a template's quick-reply button.
    Button {
        /// The payload we set on the button, if any.
        payload: Option<String>,
        /// The button label the user saw.
        text: String,
    },
    /// A tap on a reply button of an interactive message we sent.
    InteractiveButtonReply {
        /// The id we gave the button.
        id: String,
        /// The button label the user saw.
        title: String,
    },
    /// A choice from an interactive list we sent.
    InteractiveListReply {
        /// The id we gave the row.
        id: String,
        /// The row title the user saw.
        title: String,
        /// The row description, when the row had one.
        description: Option<String>,
    },
    /// A completed WhatsApp Flow (`interactive.type: nfm_reply`).
    InteractiveFlowReply {
        /// The flow name Meta reports (e.g. `flow`, `address_message`).
        name: Option<String>,
        /// The flow's answers: a JSON document encoded as a string, as Meta sends it.
        response_json: String,
    },
    /// A photo.
    Image(Media),
    /// An audio file or voice note.
    Audio(Media),
    /// A video.
    Video(Media),
    /// A file.
    Document(Media),
    /// A sticker.
    Sticker(Media),
    /// A shared location.
    Location {
        /// Degrees north.
        latitude: f64,
        /// Degrees east.
        longitude: f64,
        /// The place's name, for a named place.
        name: Option<String>,
        /// The place's address, for a named place.
        address: Option<String>,
        /// A link to the place, when WhatsApp has one.
        url: Option<String>,
    },
    /// Shared contact cards, kept raw (`messages[].contacts`, an array): the hub does not act on them.
    Contacts(Value),
    /// A reaction to an earlier message.
    Reaction {
        /// The wamid reacted to.
        message_id: String,
        /// The emoji; `None` when the user removed their reaction.
        emoji: Option<String>,
    },
    /// A cart sent from our catalog, kept raw (`messages[].order`).
    Order(Value),
    /// A notice from WhatsApp itself about the user, e.g. a changed number.
    System {
        /// Which notice.
        kind: SystemKind,
        /// Meta's human-readable text.
        body: Option<String>,
        /// The user's new wa_id (`system.wa_id`, or `system.new_wa_id` in the older shape).
        new_wa_id: Option<String>,
        /// The user's new BSUID (`system.user_id`).
        new_user_id: Option<String>,
        /// The user's BSUID before the change (`system.previous_user_id`), to find the old record.
        previous_user_id: Option<String>,
    },
    /// Any type we do not handle: `unsupported`, `unknown`, a type Meta adds later, a known
    /// type without its payload object, or an unknown interactive sub-type.
    Unsupported {
        /// Meta's `type`; for an unknown interactive sub-type `interactive.<sub-type>`.
        type_name: String,
        /// The message-level `errors[]` Meta attached, e.g. 131051 "Message type unknown".
        errors: Vec<ApiError>,
    },
}

/// The kind of a `system` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemKind {
    /// `user_changed_number` (older name: `customer_changed_number`).
    UserChangedNumber,
    /// `user_changed_user_id`: the BSUID changed.
    UserChangedUserId,
    /// `customer_identity_changed` (also `user_identity_changed`): the user's device changed.
    CustomerIdentityChanged,
    /// Anything else, as Meta spelt it.
    Other(String),
}

/// A media attachment. The bytes must be fetched separately with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The media id to download it through the Graph API.
    pub id: String,
    /// E.g. `image/jpeg`, `audio/ogg; codecs=opus`.
    pub mime_type: Option<String>,
    /// Checksum of the file, to verify the download.
    pub sha256: Option<String>,
    /// Text the user wrote under an image, video or document.
    pub caption: Option<String>,
    /// A document's file name.
    pub filename: Option<String>,
    /// For audio: `true` for a recorded voice note.
    pub voice: Option<bool>,
    /// For stickers: whether the sticker moves.
    pub animated: Option<bool>,
}

impl MessageKind {
    /// Meta's message `type` (`text`, `interactive`, `image`, …), for logs and metrics.
    pub fn type_name(&self) -> &str {
        match self {
            MessageKind::Text { .. } => "text",
            MessageKind::Button { .. } => "button",
            MessageKind::InteractiveButtonReply { .. }
            | MessageKind::InteractiveListReply { .. }
            | MessageKind::InteractiveFlowReply { .. } => "interactive",
            MessageKind::Image(_) => "image",
            MessageKind::Audio(_) => "audio",
            MessageKind::Video(_) => "video",
            MessageKind::Document(_) => "document",
            MessageKind::Sticker(_) => "sticker",
            MessageKind::Location { .. } => "location",
            MessageKind::Contacts(_) => "contacts",
            MessageKind::Reaction { .. } => "reaction",
            MessageKind::Order(_) => "order",
            MessageKind::System { .. } => "system",
            MessageKind::Unsupported { type_name, .. } => type_name,
        }
    }

    /// What the person "said", for the brain to read: a text body, a button label, the title
    /// of an interactive reply, or a media caption. `None` for everything else.
    pub fn text(&self) -> Option<&str> {
        match self {
            MessageKind::Text { body } => Some(body),
            MessageKind::Button { text, .. } => Some(text),
            MessageKind::InteractiveButtonReply { title, .. }
            | MessageKind::InteractiveListReply { title, .. } => Some(title),
            MessageKind::Image(media)
            | MessageKind::Audio(media)
            | MessageKind::Video(media)
            | MessageKind::Document(media)
            | MessageKind::Sticker(media) => media.caption.as_deref(),
            _ => None,
        }
    }
}

/// What happened to a message we sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The wamid Meta gave our message when we sent it.
    pub wamid: String,
    /// `metadata.phone_number_id` of the change: which of our numbers sent it.
    pub phone_number_id: String,
    /// Sent, delivered, read or failed.
    pub status: DeliveryStatus,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The recipient's wa_id; absent when the message went to a BSUID.
    pub recipient_id: Option<String>,
    /// The recipient's BSUID.
    pub recipient_user_id: Option<String>,
    /// The recipient's parent (portfolio-level) BSUID.
    pub recipient_parent_user_id: Option<String>,
    /// Why it failed (e.g. 131047 outside the 24-hour window); decides whether to retry.
    pub errors: Vec<ApiError>,
    /// The conversation (billing window) the message was charged to, when Meta says.
    pub conversation: Option<Conversation>,
    /// How the message was priced, when Meta says.
    pub pricing: Option<Pricing>,
    /// `biz_opaque_callback_data` we attached when sending (the outbox row's uuid), echoed
    /// back by Meta: it matches a status to a send whose wamid the hub never recorded.
    pub callback: Option<String>,
}

/// The `status` of a [`StatusUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Meta accepted it and sent it on.
    Sent,
    /// It reached the user's device.
    Delivered,
    /// The user opened it.
    Read,
    /// It will not arrive; see the errors.
    Failed,
    /// Anything else (`played`, `deleted`, `warning`, …), as Meta spelt it.
    Other(String),
}

/// The `conversation` object of a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Meta's conversation id.
    pub id: Option<String>,
    /// `origin.type`: who opened it (`business_initiated`, `service`, `marketing`, …).
    pub origin_type: Option<String>,
    /// When the conversation window closes (`expiration_timestamp`). Left out when it is not
    /// unix seconds rather than refusing the body: it is informational.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The `pricing` object of a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Whether Meta charges for the message.
    pub billable: Option<bool>,
    /// `CBP` (conversation-based) or `PMP` (per-message).
    pub pricing_model: Option<String>,
    /// E.g. `service`, `utility`, `marketing`.
    pub category: Option<String>,
    /// `pricing.type` under per-message pricing, e.g. `regular`, `free_customer_service`.
    pub pricing_type: Option<String>,
}

/// An error Meta reports in a webhook (on a change, a message or a status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Meta's error code, e.g. 131047; what retry decisions key on.
    pub code: i64,
    /// A short title.
    pub title: Option<String>,
    /// Meta's message (often the same as the title).
    pub message: Option<String>,
    /// `error_data.details`: the longer explanation.
    pub details: Option<String>,
}

/// Where in the body we are, for error messages.
#[derive(Debug, Clone, Copy)]
struct Position {
    entry: usize,
    change: usize,
}

fn read_messages_change(value: Value, at: Position, out: &mut Delivery) -> Result<(), ParseError> {
    let bad_change = |reason: String| ParseError::BadChange {
        entry: at.entry,
        change: at.change,
        reason,
    };
    let raw: RawMessagesValue =
        serde_json::from_value(value).map_err(|e| bad_change(redact(&e)))?;
    let contacts: Vec<Contact> = raw.contacts.into_iter().map(Contact::from).collect();
    out.errors
        .extend(raw.errors.into_iter().map(ApiError::from));

    if !raw.messages.is_empty() || !raw.statuses.is_empty() {
        let phone_number_id = raw
            .metadata
            .and_then(|m| m.phone_number_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                bad_change("messages or statuses without `metadata.phone_number_id`".to_owned())
            })?;
        for message in raw.messages {
            let message = read_message(message, &phone_number_id, &contacts, at)?;
            out.messages.push(message);
        }
        for status in raw.statuses {
            out.statuses
                .push(read_status(status, &phone_number_id, at)?);
        }
    }
    out.contacts.extend(contacts);
    Ok(())
}

fn read_message(
    value: Value,
    phone_number_id: &str,
    contacts: &[Contact],
    at: Position,
) -> Result<InboundMessage, ParseError> {
    const WHAT: &str = "message";
    let wamid = item_id(&value, WHAT, at)?;
    let original = value.clone();
    let raw: RawMessage = serde_json::from_value(value).map_err(|e| ParseError::BadItem {
        what: WHAT,
        id: wamid.clone(),
        reason: redact(&e),
    })?;
    let timestamp = unix_seconds(&raw.timestamp).ok_or_else(|| ParseError::BadTimestamp {
        what: WHAT,
        id: wamid.clone(),
    })?;

    let sender = contacts.iter().find(|c| {
        (raw.from.is_some() && c.wa_id == raw.from)
            || (raw.from_user_id.is_some() && c.user_id == raw.from_user_id)
    });
    let identity_key_hash = sender
        .and_then(|c| c.identity_key_hash.clone())
        .or_else(|| raw.identity.as_ref().and_then(|i| i.hash.clone()))
        .or_else(|| {
            raw.payload
                .system
                .as_ref()
                .and_then(|s| s.identity.as_ref()?.as_str().map(str::to_owned))
        });
    let (context_wamid, referred_product) = match raw.context {
        Some(context) => (context.id, context.referred_product.map(Into::into)),
        None => (None, None),
    };

    Ok(InboundMessage {
        wamid,
        phone_number_id: phone_number_id.to_owned(),
        profile_name: sender.and_then(|c| c.profile_name.clone()),
        identity_key_hash,
        from: raw.from,
        from_user_id: raw.from_user_id,
        from_parent_user_id: raw.from_parent_user_id,
        timestamp,
        context_wamid,
        referred_product,
        referral: raw.referral,
        kind: message_kind(raw.kind, raw.payload, raw.errors),
        raw: original,
    })
}

/// Maps Meta's `type` and the matching payload object to a [`MessageKind`]; anything we cannot
/// map is [`MessageKind::Unsupported`], never an error.
fn message_kind(type_name: String, p: RawPayload, errors: Vec<RawError>) -> MessageKind {
    let kind = match type_name.as_str() {
        "text" => p.text.map(|t| MessageKind::Text { body: t.body }),
        "button" => p.button.map(|b| MessageKind::Button {
            payload: b.payload,
            text: b.text,
        }),
        "interactive" => match p.interactive {
            Some(interactive) => {
                return interactive_kind(interactive, errors);
            }
            None => None,
        },
        "image" => p.image.map(|m| MessageKind::Image(m.into())),
        "audio" => p.audio.map(|m| MessageKind::Audio(m.into())),
        "video" => p.video.map(|m| MessageKind::Video(m.into())),
        "document" => p.document.map(|m| MessageKind::Document(m.into())),
        "sticker" => p.sticker.map(|m| MessageKind::Sticker(m.into())),
        "location" => p.location.map(|l| MessageKind::Location {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name,
            address: l.address,
            url: l.url,
        }),
        "contacts" => p.contacts.map(MessageKind::Contacts),
        "reaction" => p.reaction.map(|r| MessageKind::Reaction {
            message_id: r.message_id,
            // Meta documents removal as a missing emoji; some senders use "" instead.
            emoji: r.emoji.filter(|e| !e.is_empty()),
        }),
        "order" => p.order.map(MessageKind::Order),
        "system" => p.system.map(|s| MessageKind::System {
            kind: SystemKind::from(s.kind.unwrap_or_default()),
            body: s.body,
            new_wa_id: s.wa_id.or(s.new_wa_id).map(String::from),
            new_user_id: s.user_id,
            previous_user_id: s.previous_user_id,
        }),
        _ => None,
    };
    kind.unwrap_or_else(|| MessageKind::Unsupported {
        type_name,
        errors: errors.into_iter().map(ApiError::from).collect(),
    })
}

fn interactive_kind(interactive: RawInteractive, errors: Vec<RawError>) -> MessageKind {
    let kind = match interactive.kind.as_str() {
        "button_reply" => interactive
            .button_reply
            .map(|r| MessageKind::InteractiveButtonReply {
                id: r.id,
                title: r.title,
            }),
        "list_reply" => interactive
            .list_reply
            .map(|r| MessageKind::InteractiveListReply {
                id: r.id,
                title: r.title,
                description: r.description,
            }),
        "nfm_reply" => interactive
            .nfm_reply
            .map(|r| MessageKind::InteractiveFlowReply {
                name: r.name,
                response_json: r.response_json,
            }),
        _ => None,
    };
    kind.unwrap_or_else(|| MessageKind::Unsupported {
        type_name: format!("interactive.{}", interactive.kind),
        errors: errors.into_iter().map(ApiError::from).collect(),
    })
}

fn read_status(
    value: Value,
    phone_number_id: &str,
    at: Position,
) -> Result<StatusUpdate, ParseError> {
    const WHAT: &str = "status";
    let wamid = item_id(&value, WHAT, at)?;
    let raw: RawStatus = serde_json::from_value(value).map_err(|e| ParseError::BadItem {
        what: WHAT,
        id: wamid.clone(),
        reason: redact(&e),
    })?;
    let timestamp = unix_seconds(&raw.timestamp).ok_or_else(|| ParseError::BadTimestamp {
        what: WHAT,
        id: wamid.clone(),
    })?;
    Ok(StatusUpdate {
        wamid,
        phone_number_id: phone_number_id.to_owned(),
        status: DeliveryStatus::from(raw.status),
        timestamp,
        recipient_id: raw.recipient_id,
        recipient_user_id: raw.recipient_user_id,
        recipient_parent_user_id: raw.parent_recipient_user_id,
        errors: raw.errors.into_iter().map(ApiError::from).collect(),
        conversation: raw.conversation.map(|c| Conversation {
            id: c.id,
            origin_type: c.origin.and_then(|o| o.kind),
            expires_at: c.expiration_timestamp.as_ref().and_then(unix_seconds),
        }),
        pricing: raw.pricing.map(|p| Pricing {
            billable: p.billable,
            pricing_model: p.pricing_model,
            category: p.category,
            pricing_type: p.kind,
        }),
        callback: raw.biz_opaque_callback_data,
    })
}

/// The non-empty string `id` of a message or status, read before the typed pass so that every
/// later error can name it.
fn item_id(value: &Value, what: &'static str, at: Position) -> Result<String, ParseError> {
    match value.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(ParseError::MissingId {
            what,
            entry: at.entry,
            change: at.change,
        }),
    }
}

/// Unix seconds, as Meta's string (`"1673020317"`) or as a JSON integer (some senders and
/// `user_preferences` use one). Anything else, including signs, spaces and fractions, is `None`.
fn unix_seconds(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok()?
        }
        Value::Number(n) => i64::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

/// A short description of a wrong `object`, for [`ParseError::WrongObject`].
fn describe_object(found: Option<&Value>) -> String {
    match found {
        None => "missing".to_owned(),
        Some(Value::String(s)) => format!("{:?}", s.chars().take(64).collect::<String>()),
        Some(Value::Null) => "null".to_owned(),
        Some(Value::Bool(_)) => "a boolean".to_owned(),
        Some(Value::Number(_)) => "a number".to_owned(),
        Some(Value::Array(_)) => "an array".to_owned(),
        Some(Value::Object(_)) => "an object".to_owned(),
    }
}

/// serde_json's message with every double-quoted value blanked out: `invalid type: string
/// "…", expected f64` says what was wrong without repeating what a user wrote. Field names
/// are in backticks and survive.
fn redact(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…\"");
                quoted = true;
            }
            ('"', true) => quoted = false,
            ('\\', true) => {
                chars.next();
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

impl From<RawContact> for Contact {
    fn from(raw: RawContact) -> Self {
        let (profile_name, username) = match raw.profile {
            Some(profile) => (profile.name, profile.username),
            None => (None, None),
        };
        Contact {
            wa_id: raw.wa_id,
            user_id: raw.user_id,
            parent_user_id: raw.parent_user_id,
            profile_name,
            username,
            identity_key_hash: raw.identity_key_hash,
        }
    }
}

impl From<RawError> for ApiError {
    fn from(raw: RawError) -> Self {
        ApiError {
            code: raw.code,
            title: raw.title,
            message: raw.message,
            details: raw.error_data.and_then(|d| d.details),
        }
    }
}

impl From<RawMedia> for Media {
    fn from(raw: RawMedia) -> Self {
        Media {
            id: raw.id,
            mime_type: raw.mime_type,
            sha256: raw.sha256,
            caption: raw.caption,
            filename: raw.filename,
            voice: raw.voice,
            animated: raw.animated,
        }
    }
}

impl From<RawReferredProduct> for ReferredProduct {
    fn from(raw: RawReferredProduct) -> Self {
        ReferredProduct {
            catalog_id: raw.catalog_id,
            product_retailer_id: raw.product_retailer_id,
        }
    }
}

impl From<String> for SystemKind {
    fn from(kind: String) -> Self {
        match kind.as_str() {
            "user_changed_number" | "customer_changed_number" => SystemKind::UserChangedNumber,
            "user_changed_user_id" => SystemKind::UserChangedUserId,
            "customer_identity_changed" | "user_identity_changed" => {
                SystemKind::CustomerIdentityChanged
            }
            _ => SystemKind::Other(kind),
        }
    }
}

impl From<String> for DeliveryStatus {
    fn from(status: String) -> Self {
        match status.as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Other(status),
        }
    }
}

// Meta's wire shapes. Unknown fields are ignored (serde's default); optional ones are `Option`.

#[derive(Deserialize)]
struct RawEnvelope {
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    changes: Vec<RawChange>,
}

#[derive(Deserialize)]
struct RawChange {
    field: String,
    value: Value,
}

#[derive(Deserialize)]
struct RawMessagesValue {
    metadata: Option<RawMetadata>,
    #[serde(default)]
    contacts: Vec<RawContact>,
    /// Kept as values so each can be checked on its own and errors can name its id.
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    statuses: Vec<Value>,
    #[serde(default)]
    errors: Vec<RawError>,
}

#[derive(Deserialize)]
struct RawMetadata {
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct RawContact {
    wa_id: Option<String>,
    user_id: Option<String>,
    parent_user_id: Option<String>,
    profile: Option<RawProfile>,
    identity_key_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawProfile {
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    code: i64,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<RawErrorData>,
}

#[derive(Deserialize)]
struct RawErrorData {
    details: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    from: Option<String>,
    from_user_id: Option<String>,
    from_parent_user_id: Option<String>,
    /// Checked by [`unix_seconds`] so that a bad one gets its own error.
    #[serde(default)]
    timestamp: Value,
    #[serde(rename = "type")]
    kind: String,
    context: Option<RawContext>,
    referral: Option<Value>,
    identity: Option<RawIdentity>,
    #[serde(default)]
    errors: Vec<RawError>,
    #[serde(flatten)]
    payload: RawPayload,
}

/// The per-type payload objects; only the one named by `type` is read.
#[derive(Deserialize)]
struct RawPayload {
    text: Option<RawText>,
    button: Option<RawButton>,
    interactive: Option<RawInteractive>,
    image: Option<RawMedia>,
    audio: Option<RawMedia>,
    video: Option<RawMedia>,
    document: Option<RawMedia>,
    sticker: Option<RawMedia>,
    location: Option<RawLocation>,
    contacts: Option<Value>,
    reaction: Option<RawReaction>,
    order: Option<Value>,
    system: Option<RawSystem>,
}

#[derive(Deserialize)]
struct RawContext {
    id: Option<String>,
    referred_product: Option<RawReferredProduct>,
}

#[derive(Deserialize)]
struct RawReferredProduct {
    catalog_id: Option<String>,
    product_retailer_id: Option<String>,
}

#[derive(Deserialize)]
struct RawIdentity {
    hash: Option<String>,
}

#[derive(Deserialize)]
struct RawText {
    body: String,
}

#[derive(Deserialize)]
struct RawButton {
    payload: Option<String>,
    text: String,
}

#[derive(Deserialize)]
struct RawInteractive {
    #[serde(rename = "type")]
    kind: String,
    button_reply: Option<RawReply>,
    list_reply: Option<RawReply>,
    nfm_reply: Option<RawFlowReply>,
}

#[derive(Deserialize)]
struct RawReply {
    id: String,
    title: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct RawFlowReply {
    name: Option<String>,
    response_json: String,
}

#[derive(Deserialize)]
struct RawMedia {
    id: String,
    mime_type: Option<String>,
    sha256: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
    voice: Option<bool>,
    animated: Option<bool>,
}

#[derive(Deserialize)]
struct RawLocation {
    latitude: f64,
    longitude: f64,
    name: Option<String>,
    address: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawReaction {
    message_id: String,
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct RawSystem {
    #[serde(rename = "type")]
    kind: Option<String>,
    body: Option<String>,
    wa_id: Option<StringOrNumber>,
    new_wa_id: Option<StringOrNumber>,
    user_id: Option<String>,
    previous_user_id: Option<String>,
    /// The identity hash in the oldest `customer_identity_changed` shape; read only when it is
    /// a string.
    identity: Option<Value>,
}

/// Older payloads sent `system.new_wa_id` as a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(serde_json::Number),
}

impl From<StringOrNumber> for String {
    fn from(value: StringOrNumber) -> Self {
        match value {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct RawStatus {
    status: String,
    #[serde(default)]
    timestamp: Value,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    parent_recipient_user_id: Option<String>,
    #[serde(default)]
    errors: Vec<RawError>,
    conversation: Option<RawConversation>,
    pricing: Option<RawPricing>,
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct RawConversation {
    id: Option<String>,
    expiration_timestamp: Option<Value>,
    origin: Option<RawOrigin>,
}

#[derive(Deserialize)]
struct RawOrigin {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawPricing {
    billable: Option<bool>,
    pricing_model: Option<String>,
    category: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn fixtures_dir() -> PathBuf {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/whatsapp"
        ))
        .to_path_buf()
    }

    fn fixture(name: &str) -> Delivery {
        let path = fixtures_dir().join(name);
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn only_message(name: &str) -> InboundMessage {
        let delivery = fixture(name);
        assert_eq!(delivery.messages.len(), 1, "{name}");
        delivery.messages.into_iter().next().unwrap()
    }

    fn only_status(name: &str) -> StatusUpdate {
        let delivery = fixture(name);
        assert_eq!(delivery.statuses.len(), 1, "{name}");
        delivery.statuses.into_iter().next().unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// A body with one `messages` change holding `messages`.
    fn body_with_messages(messages: Value) -> Vec<u8> {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "102290129340398",
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922"
                        },
                        "messages": messages
                    }
                }]
            }]
        })
        .to_string()
        .into_bytes()
    }

    fn parse_one(message: Value) -> Result<InboundMessage, ParseError> {
        let delivery = parse(&body_with_messages(json!([message])))?;
        Ok(delivery.messages.into_iter().next().unwrap())
    }

    #[test]
    fn every_fixture_parses_and_yields_something() {
        let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
            .expect("fixtures folder is readable")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        assert!(
            !names.is_empty(),
            "no fixtures found in {}",
            fixtures_dir().display()
        );
        for name in &names {
            let d = fixture(name);
            let items = d.messages.len() + d.statuses.len() + d.other_fields.len();
            assert!(items > 0, "{name} parsed to an empty delivery");
        }
    }

    #[test]
    fn a_text_message_carries_sender_body_and_time() {
        let delivery = fixture("text.json");
        let m = &delivery.messages[0];
        assert_eq!(
            m.wamid,
            "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA=="
        );
        assert_eq!(m.phone_number_id, "409552778964973");
        assert_eq!(m.from.as_deref(), Some("1111111111111"));
        assert_eq!(m.from_user_id, None);
        assert_eq!(m.profile_name.as_deref(), Some("Mauricio Binda"));
        assert_eq!(m.timestamp, at(1_672_947_578));
        assert_eq!(m.context_wamid, None);
        assert_eq!(
            m.kind,
            MessageKind::Text {
                body: "hi everyone!".into()
            }
        );
        assert_eq!(m.kind.type_name(), "text");
        assert_eq!(m.kind.text(), Some("hi everyone!"));
        assert_eq!(delivery.contacts.len(), 1);
        assert!(delivery.statuses.is_empty() && delivery.errors.is_empty());
    }

    #[test]
    fn a_sender_known_only_by_bsuid_has_a_user_id_and_no_phone() {
        let delivery = fixture("bsuid_username_only_text.json");
        let m = &delivery.messages[0];
        assert_eq!(m.wamid, "ABGGFlA5Fpa");
        assert_eq!(m.from, None);
        assert_eq!(m.from_user_id.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(
            m.from_parent_user_id.as_deref(),
            Some("US.ENT.506847293015824")
        );
        assert_eq!(m.profile_name.as_deref(), Some("test user name"));
        assert_eq!(m.kind.text(), Some("this is a text message"));
        let contact = &delivery.contacts[0];
        assert_eq!(contact.wa_id, None);
        assert_eq!(contact.username.as_deref(), Some("@testusername"));
        assert_eq!(
            contact.parent_user_id.as_deref(),
            Some("US.ENT.506847293015824")
        );
    }

    #[test]
    fn a_sender_with_phone_and_bsuid_carries_both() {
        let m = only_message("bsuid_user_id_text.json");
        assert_eq!(m.from.as_deref(), Some("16315551181"));
        assert_eq!(m.from_user_id.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(m.profile_name.as_deref(), Some("test user name"));
    }

    #[test]
    fn the_identity_key_hash_is_joined_from_contacts() {
        let delivery = fixture("identity_key_hash_text.json");
        let m = &delivery.messages[0];
        assert_eq!(m.identity_key_hash.as_deref(), Some("DF2lS5v2W6x="));
        assert_eq!(m.profile_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(
            delivery.contacts[0].identity_key_hash.as_deref(),
            Some("DF2lS5v2W6x=")
        );
        assert_eq!(only_message("text.json").identity_key_hash, None);
    }

    #[test]
    fn a_contact_of_someone_else_is_not_joined_to_the_sender() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "1"},
                "contacts": [{"profile": {"name": "Other"}, "wa_id": "999", "identity_key_hash": "h"}],
                "messages": [{"from": "111", "id": "wamid.A", "timestamp": "1700000000",
                              "type": "text", "text": {"body": "hi"}}]
            }}]}]
        });
        let delivery = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(delivery.messages[0].profile_name, None);
        assert_eq!(delivery.messages[0].identity_key_hash, None);
    }

    #[test]
    fn an_image_keeps_its_media_id_mime_type_and_checksum() {
        let m = only_message("image.json");
        let MessageKind::Image(media) = &m.kind else {
            panic!("not an image: {:?}", m.kind)
        };
        assert_eq!(media.id, "8472976218001204");
        assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(
            media.sha256.as_deref(),
            Some("ciJuSxU7RLnnFz3cNcasdL7UQKt9e1yj/3u+Rhsabv0=")
        );
        assert_eq!(media.caption, None);
        assert_eq!(m.kind.text(), None);
        assert_eq!(m.kind.type_name(), "image");
    }

    #[test]
    fn a_voice_note_is_audio_marked_as_voice() {
        let m = only_message("audio_voice.json");
        let MessageKind::Audio(media) = &m.kind else {
            panic!("not audio: {:?}", m.kind)
        };
        assert_eq!(media.id, "827776106019109");
        assert_eq!(media.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
        assert_eq!(media.voice, Some(true));
    }

    #[test]
    fn a_video_caption_is_what_the_user_said() {
        let m = only_message("video.json");
        let MessageKind::Video(media) = &m.kind else {
            panic!("not a video: {:?}", m.kind)
        };
        assert_eq!(media.id, "661828760183585");
        assert_eq!(media.mime_type.as_deref(), Some("video/mp4"));
        assert_eq!(m.kind.text(), Some("hello world"));
    }

    #[test]
    fn a_document_keeps_its_filename() {
        let m = only_message("document.json");
        let MessageKind::Document(media) = &m.kind else {
            panic!("not a document: {:?}", m.kind)
        };
        assert_eq!(media.id, "848704520347750");
        assert_eq!(media.filename.as_deref(), Some("4_641947.pdf"));
        assert_eq!(media.mime_type.as_deref(), Some("application/pdf"));
    }

    #[test]
    fn a_sticker_says_whether_it_is_animated() {
        let m = only_message("sticker.json");
        let MessageKind::Sticker(media) = &m.kind else {
            panic!("not a sticker: {:?}", m.kind)
        };
        assert_eq!(media.id, "1604825680670873");
        assert_eq!(media.mime_type.as_deref(), Some("image/webp"));
        assert_eq!(media.animated, Some(false));
    }

    #[test]
    fn a_reply_button_tap_carries_its_id_title_and_the_message_it_answers() {
        let m = only_message("interactive_button_reply.json");
        assert_eq!(
            m.kind,
            MessageKind::InteractiveButtonReply {
                id: "callback_data".into(),
                title: "title".into()
            }
        );
        assert_eq!(m.kind.type_name(), "interactive");
        assert_eq!(m.kind.text(), Some("title"));
        assert_eq!(m.context_wamid.as_deref(), Some("wamid.xyzxyz"));
        assert_eq!(m.from_user_id, None, "the BSUID is only in contacts here");
        assert_eq!(m.profile_name.as_deref(), Some("Test Name"));
    }

    #[test]
    fn a_list_reply_carries_its_description() {
        let m = only_message("interactive_list_reply.json");
        assert_eq!(
            m.kind,
            MessageKind::InteractiveListReply {
                id: "callback_data".into(),
                title: "title".into(),
                description: Some("description".into())
            }
        );
        assert_eq!(m.kind.text(), Some("title"));
    }

    #[test]
    fn a_flow_completion_keeps_its_response_json_as_a_string() {
        let m = only_message("interactive_nfm_reply_flow.json");
        let MessageKind::InteractiveFlowReply {
            name,
            response_json,
        } = &m.kind
        else {
            panic!("not a flow reply: {:?}", m.kind)
        };
        assert_eq!(name.as_deref(), Some("flow"));
        let answers: Value = serde_json::from_str(response_json).unwrap();
        assert_eq!(answers["delivery_rating"], "4");
        assert_eq!(m.kind.text(), None);
    }

    #[test]
    fn a_template_quick_reply_carries_payload_and_text() {
        let m = only_message("template_button.json");
        assert_eq!(
            m.kind,
            MessageKind::Button {
                payload: Some("SIM".into()),
                text: "SIM".into()
            }
        );
        assert_eq!(m.kind.text(), Some("SIM"));
        assert!(m.context_wamid.is_some());
    }

    #[test]
    fn a_location_carries_coordinates_and_its_unescaped_url() {
        let m = only_message("location.json");
        assert_eq!(
            m.kind,
            MessageKind::Location {
                latitude: -10.93941311633,
                longitude: -10.606395436721,
                name: None,
                address: None,
                url: Some("https://foursquare.com/v/5c42c5667d8497002c6e09f9".into())
            }
        );
    }

    #[test]
    fn shared_contact_cards_are_kept_raw() {
        let m = only_message("contacts.json");
        let MessageKind::Contacts(cards) = &m.kind else {
            panic!("not contacts: {:?}", m.kind)
        };
        let cards = cards.as_array().unwrap();
        assert_eq!(cards.len(), 3);
        assert_eq!(cards[0]["name"]["formatted_name"], "Chandler Bing");
        assert_eq!(cards[2]["phones"][0]["type"], "WORK");
    }

    #[test]
    fn a_reaction_names_the_message_and_the_emoji() {
        let m = only_message("reaction.json");
        assert_eq!(
            m.kind,
            MessageKind::Reaction {
                message_id: "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA=="
                    .into(),
                emoji: Some("👍".into())
            }
        );
        assert_eq!(m.kind.text(), None);
    }

    #[test]
    fn a_removed_reaction_has_no_emoji() {
        let m = only_message("reaction_removed.json");
        assert_eq!(
            m.kind,
            MessageKind::Reaction {
                message_id: "MESSAGE_ID".into(),
                emoji: None
            }
        );
        let empty = parse_one(
            json!({"from": "1", "id": "wamid.R", "timestamp": "1", "type": "reaction",
                                     "reaction": {"message_id": "wamid.X", "emoji": ""}}),
        )
        .unwrap();
        assert!(matches!(
            empty.kind,
            MessageKind::Reaction { emoji: None, .. }
        ));
    }

    #[test]
    fn an_order_is_kept_raw() {
        let m = only_message("order.json");
        let MessageKind::Order(order) = &m.kind else {
            panic!("not an order: {:?}", m.kind)
        };
        assert_eq!(order["catalog_id"], "354160437058781");
        assert_eq!(order["product_items"].as_array().unwrap().len(), 3);
        assert_eq!(order["product_items"][0]["quantity"], 3);
    }

    #[test]
    fn a_changed_number_carries_the_new_wa_id_in_both_shapes() {
        for (name, old, new) in [
            (
                "system_user_changed_number.json",
                "972987654321",
                "972912345678",
            ),
            (
                "system_user_changed_number_new_wa_id.json",
                "15550002222",
                "15550003333",
            ),
        ] {
            let m = only_message(name);
            assert_eq!(m.from.as_deref(), Some(old), "{name}");
            let MessageKind::System {
                kind, new_wa_id, ..
            } = &m.kind
            else {
                panic!("{name} is not a system message: {:?}", m.kind)
            };
            assert_eq!(kind, &SystemKind::UserChangedNumber, "{name}");
            assert_eq!(new_wa_id.as_deref(), Some(new), "{name}");
            assert_eq!(m.profile_name, None, "{name} has no contacts");
        }
    }

    #[test]
    fn a_changed_user_id_carries_the_new_and_previous_bsuid() {
        let m = parse_one(json!({
            "from_user_id": "US.OLD", "id": "wamid.S", "timestamp": "1754870400", "type": "system",
            "system": {"body": "User changed", "type": "user_changed_user_id",
                       "user_id": "US.NEW", "previous_user_id": "US.OLD"}
        }))
        .unwrap();
        assert_eq!(
            m.kind,
            MessageKind::System {
                kind: SystemKind::UserChangedUserId,
                body: Some("User changed".into()),
                new_wa_id: None,
                new_user_id: Some("US.NEW".into()),
                previous_user_id: Some("US.OLD".into())
            }
        );
    }

    #[test]
    fn an_identity_change_carries_the_message_level_hash() {
        let m = only_message("system_customer_identity_changed.json");
        assert!(matches!(
            m.kind,
            MessageKind::System {
                kind: SystemKind::CustomerIdentityChanged,
                ..
            }
        ));
        assert_eq!(m.identity_key_hash.as_deref(), Some("xyzxyz"));
        assert_eq!(m.profile_name.as_deref(), Some("User A"));
    }

    #[test]
    fn a_reply_carries_the_wamid_it_quotes() {
        let m = only_message("message_with_context_reply.json");
        assert_eq!(m.context_wamid.as_deref(), Some("wamid.xyzxyz=="));
        assert_eq!(m.kind.text(), Some("replied text"));
    }

    #[test]
    fn an_ad_click_keeps_its_referral() {
        let m = only_message("referral_ad.json");
        let referral = m.referral.expect("referral kept");
        assert_eq!(referral["source_type"], "ad");
        assert_eq!(referral["ctwa_clid"], "CTWA_ABC");
        assert_eq!(m.kind.text(), Some("Hi from an ad click!"));
    }

    #[test]
    fn a_product_inquiry_names_the_referred_product() {
        let m = only_message("product_inquiry_referred_product.json");
        assert_eq!(
            m.referred_product,
            Some(ReferredProduct {
                catalog_id: Some("CATALOG_9999".into()),
                product_retailer_id: Some("SKU-1234".into())
            })
        );
        assert_eq!(m.context_wamid.as_deref(), Some("wamid.IDCONTEXT1"));
    }

    #[test]
    fn a_sent_status_carries_conversation_and_pricing() {
        let s = only_status("status_sent.json");
        assert_eq!(
            s.wamid,
            "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA=="
        );
        assert_eq!(s.phone_number_id, "409552778964973");
        assert_eq!(s.status, DeliveryStatus::Sent);
        assert_eq!(s.timestamp, at(1_673_020_317));
        assert_eq!(s.recipient_id.as_deref(), Some("1111111111111"));
        assert!(s.errors.is_empty());
        assert_eq!(
            s.conversation,
            Some(Conversation {
                id: Some("8eb644d2350611f3746e7f0985bddfc1".into()),
                origin_type: Some("business_initiated".into()),
                expires_at: Some(at(1_673_031_000)),
            })
        );
        assert_eq!(
            s.pricing,
            Some(Pricing {
                billable: Some(true),
                pricing_model: Some("CBP".into()),
                category: Some("business_initiated".into()),
                pricing_type: None,
            })
        );
    }

    #[test]
    fn delivered_and_read_statuses_are_recognised() {
        let delivered = only_status("status_delivered.json");
        assert_eq!(delivered.status, DeliveryStatus::Delivered);
        assert_eq!(delivered.conversation.unwrap().expires_at, None);
        let read = only_status("status_read.json");
        assert_eq!(read.status, DeliveryStatus::Read);
        assert_eq!(read.wamid, "wamid.ID");
        assert_eq!(read.timestamp, at(1_674_914_356));
        assert_eq!(read.conversation, None);
    }

    #[test]
    fn a_failed_status_carries_its_error_code() {
        let s = only_status("status_failed.json");
        assert_eq!(s.status, DeliveryStatus::Failed);
        assert_eq!(
            s.errors,
            vec![ApiError {
                code: 131047,
                title: Some("Re-engagement message".into()),
                message: Some("Re-engagement message".into()),
                details: Some(
                    "Message failed to send because more than 24 hours have passed since the \
                     customer last replied to this number."
                        .into()
                ),
            }]
        );
    }

    #[test]
    fn a_status_to_a_bsuid_has_a_recipient_user_id_and_no_phone() {
        let delivery = fixture("status_sent_to_bsuid.json");
        let s = &delivery.statuses[0];
        assert_eq!(s.recipient_id, None);
        assert_eq!(
            s.recipient_user_id.as_deref(),
            Some("US.13491208655302741918")
        );
        assert_eq!(
            s.recipient_parent_user_id.as_deref(),
            Some("US.ENT.506847293015824")
        );
        assert_eq!(
            s.pricing.as_ref().unwrap().pricing_type.as_deref(),
            Some("regular")
        );
        assert_eq!(
            delivery.contacts.len(),
            1,
            "contacts after statuses still count"
        );
    }

    #[test]
    fn an_unknown_status_is_kept_by_name() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "1"},
                "statuses": [{"id": "wamid.P", "status": "played", "timestamp": "1700000000"}]
            }}]}]
        });
        let delivery = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            delivery.statuses[0].status,
            DeliveryStatus::Other("played".into())
        );
    }

    #[test]
    fn several_messages_in_one_change_keep_their_order() {
        let delivery = fixture("multiple_messages.json");
        let wamids: Vec<&str> = delivery.messages.iter().map(|m| m.wamid.as_str()).collect();
        assert_eq!(wamids, ["wamid.GBGX2323902", "wamid.OMGReaction"]);
        assert_eq!(delivery.messages[0].kind.type_name(), "text");
        assert_eq!(
            delivery.messages[1].kind,
            MessageKind::Reaction {
                message_id: "wamid.GBGX2323902".into(),
                emoji: Some("👍".into())
            }
        );
        assert!(delivery
            .messages
            .iter()
            .all(|m| m.profile_name.as_deref() == Some("Sam Sample")));
    }

    #[test]
    fn several_changes_in_one_entry_are_all_read() {
        let delivery = fixture("multiple_changes.json");
        let bodies: Vec<_> = delivery.messages.iter().map(|m| m.kind.text()).collect();
        assert_eq!(bodies, [Some("MESSAGE_BODY"), Some("MESSAGE_BODY2")]);
        assert_eq!(delivery.messages[1].timestamp, at(1_669_233_779));
        assert_eq!(delivery.contacts.len(), 2);
    }

    #[test]
    fn several_entries_in_one_post_are_all_read() {
        let change = |id: &str, field: &str| {
            json!({"id": "waba", "changes": [{"field": field, "value": {
                "metadata": {"phone_number_id": "1"},
                "messages": [{"from": "1", "id": id, "timestamp": "1700000000",
                              "type": "text", "text": {"body": id}}],
                "statuses": [{"id": format!("{id}.s"), "status": "read", "timestamp": "1700000000"}]
            }}]})
        };
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [change("wamid.1", "messages"), change("x", "calls"), change("wamid.2", "messages")]
        });
        let delivery = parse(body.to_string().as_bytes()).unwrap();
        let wamids: Vec<&str> = delivery.messages.iter().map(|m| m.wamid.as_str()).collect();
        assert_eq!(wamids, ["wamid.1", "wamid.2"]);
        assert_eq!(delivery.statuses.len(), 2);
        assert_eq!(delivery.other_fields.len(), 1);
    }

    #[test]
    fn other_webhook_fields_go_to_other_fields_untouched() {
        for (name, field) in [
            (
                "template_status_update.json",
                "message_template_status_update",
            ),
            (
                "message_template_quality_update.json",
                "message_template_quality_update",
            ),
            ("account_update.json", "account_update"),
            (
                "phone_number_quality_update.json",
                "phone_number_quality_update",
            ),
            ("user_preferences.json", "user_preferences"),
            ("calls_connect.json", "calls"),
            ("smb_message_echoes.json", "smb_message_echoes"),
        ] {
            let delivery = fixture(name);
            assert_eq!(delivery.other_fields.len(), 1, "{name}");
            assert_eq!(delivery.other_fields[0].field, field, "{name}");
            assert!(
                delivery.messages.is_empty(),
                "{name}: echoes are not inbound"
            );
            assert!(delivery.contacts.is_empty(), "{name}");
        }
        let template = fixture("template_status_update.json");
        assert_eq!(template.other_fields[0].value["event"], "APPROVED");
        let quality = fixture("phone_number_quality_update.json");
        assert_eq!(quality.other_fields[0].value["current_limit"], "TIER_10K");
    }

    #[test]
    fn an_unsupported_message_keeps_its_errors() {
        let m = only_message("unsupported.json");
        assert_eq!(
            m.kind,
            MessageKind::Unsupported {
                type_name: "unsupported".into(),
                errors: vec![ApiError {
                    code: 131051,
                    title: Some("Message type unknown".into()),
                    message: Some("Message type unknown".into()),
                    details: Some("Message type is currently not supported.".into()),
                }]
            }
        );
        assert_eq!(m.kind.type_name(), "unsupported");
        assert_eq!(m.kind.text(), None);
    }

    #[test]
    fn an_interactive_message_without_its_object_is_unsupported_and_change_errors_are_kept() {
        let delivery = fixture("interactive_with_value_errors.json");
        assert_eq!(
            delivery.messages[0].kind,
            MessageKind::Unsupported {
                type_name: "interactive".into(),
                errors: vec![]
            }
        );
        assert_eq!(delivery.errors.len(), 1);
        assert_eq!(delivery.errors[0].code, 131000);
        assert_eq!(
            delivery.errors[0].details.as_deref(),
            Some("Unsupported webhook payload")
        );
    }

    #[test]
    fn an_unknown_message_type_is_unsupported_not_an_error() {
        let m = parse_one(
            json!({"from": "1", "id": "wamid.U", "timestamp": "1700000000",
                                 "type": "hologram", "hologram": {"depth": 3}}),
        )
        .unwrap();
        assert_eq!(m.kind.type_name(), "hologram");
        let m = parse_one(
            json!({"from": "1", "id": "wamid.I", "timestamp": "1700000000",
                                 "type": "interactive",
                                 "interactive": {"type": "call_permission_reply",
                                                 "call_permission_reply": {"response": "accept"}}}),
        )
        .unwrap();
        assert_eq!(m.kind.type_name(), "interactive.call_permission_reply");
    }

    #[test]
    fn an_integer_timestamp_is_accepted() {
        let m = parse_one(
            json!({"from": "1", "id": "wamid.T", "timestamp": 1_700_000_000,
                                 "type": "text", "text": {"body": "hi"}}),
        )
        .unwrap();
        assert_eq!(m.timestamp, at(1_700_000_000));
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        let err = parse(b"hub.mode=subscribe").unwrap_err();
        assert!(matches!(err, ParseError::NotJson { .. }), "{err:?}");
        assert!(err.to_string().starts_with("body is not JSON"), "{err}");
    }

    #[test]
    fn a_body_for_another_object_is_refused() {
        let err = parse(br#"{"object": "page", "entry": []}"#).unwrap_err();
        assert_eq!(
            err,
            ParseError::WrongObject {
                found: "\"page\"".into()
            }
        );
        let err = parse(br#"{"entry": []}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`object` is missing, expected \"whatsapp_business_account\""
        );
    }

    #[test]
    fn an_envelope_without_entries_or_changes_is_refused() {
        let err = parse(br#"{"object": "whatsapp_business_account"}"#).unwrap_err();
        assert!(matches!(err, ParseError::BadEnvelope { .. }), "{err:?}");
        let err =
            parse(br#"{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("`value`"), "{err}");
    }

    #[test]
    fn a_message_without_an_id_is_refused() {
        let err = parse_one(
            json!({"from": "1", "timestamp": "1700000000", "type": "text",
                                   "text": {"body": "hi"}}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ParseError::MissingId {
                what: "message",
                entry: 0,
                change: 0
            }
        );
    }

    #[test]
    fn a_message_with_a_non_numeric_timestamp_is_refused() {
        for timestamp in [json!("yesterday"), json!("-5"), json!(1.5), json!(null)] {
            let err = parse_one(json!({"from": "1", "id": "wamid.T", "timestamp": timestamp,
                                       "type": "text", "text": {"body": "hi"}}))
            .unwrap_err();
            assert_eq!(
                err,
                ParseError::BadTimestamp {
                    what: "message",
                    id: "wamid.T".into()
                },
                "{timestamp}"
            );
        }
    }

    #[test]
    fn messages_without_the_receiving_number_are_refused() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messages": [{"from": "1", "id": "wamid.M", "timestamp": "1700000000",
                              "type": "text", "text": {"body": "hi"}}]
            }}]}]
        });
        let err = parse(body.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("metadata.phone_number_id"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_message_but_never_repeat_what_the_user_wrote() {
        let err = parse_one(json!({"from": "1", "id": "wamid.L", "timestamp": "1700000000",
                                   "type": "location",
                                   "location": {"latitude": "my secret \"home\"", "longitude": 1.0}}))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                ParseError::BadItem {
                    what: "message",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(text.contains("wamid.L"), "{text}");
        assert!(!text.contains("secret") && !text.contains("home"), "{text}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::hash_map("[a-z_]{1,12}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn envelope(value: Value) -> Vec<u8> {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": value }] }]
        })
        .to_string()
        .into_bytes()
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_give_a_reason(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Err(e) = parse(&body) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn any_json_in_a_change_parses_or_gives_a_reason(value in any_json()) {
            if let Err(e) = parse(&envelope(value)) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn any_message_shape_with_its_ids_parses_or_gives_a_reason(
            extra in proptest::collection::hash_map("[a-z_]{1,10}", any_json(), 0..6),
            kind in prop_oneof![
                prop_oneof![Just("text"), Just("image"), Just("interactive"), Just("button"),
                            Just("system"), Just("reaction")].prop_map(str::to_owned),
                ".{0,12}",
            ],
        ) {
            let mut message = json!({ "from": "6281100000001", "id": "wamid.p",
                                      "timestamp": "1700000000", "type": kind });
            for (k, v) in extra {
                message[k] = v;
            }
            let body = envelope(json!({ "messaging_product": "whatsapp",
                                        "metadata": { "phone_number_id": "1" },
                                        "messages": [message] }));
            if let Err(e) = parse(&body) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn any_text_arrives_as_sent_without_its_nul_characters(text in any::<String>()) {
            let body = envelope(json!({
                "messaging_product": "whatsapp",
                "metadata": { "phone_number_id": "1" },
                "messages": [{ "from": "6281100000001", "id": "wamid.p", "timestamp": "1700000000",
                               "type": "text", "text": { "body": text } }]
            }));
            let delivery = parse(&body).expect("a well-formed text message");
            prop_assert_eq!(delivery.messages.len(), 1);
            let expected: String = text.chars().filter(|c| *c != '\0').collect();
            prop_assert_eq!(delivery.messages[0].kind.text(), Some(expected.as_str()));
            prop_assert!(!delivery.messages[0].raw.to_string().contains("\\u0000"));
        }
    }
}
