-- Images the hub sends (the charts of src/metrics/chart.rs). The answer's transaction writes the
-- PNG here and an outbox row of kind 'image' whose payload names it
-- ({"type":"image","image":{"hub_media":"<uuid>","caption":…}}); the sender uploads the bytes
-- to the phone number's /media endpoint once, keeps the id Meta gave it, and sends the image
-- by that id. `key` ('chart:<inbound wamid>') makes a message processed twice write one image.
create table wa_media (
    id          bigserial primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    key         text not null unique,
    mime        text not null,
    bytes       bytea not null,
    -- Meta's media id (valid 30 days), or the file's path in local mode
    media_id    text,
    uploaded_at timestamptz,
    created_at  timestamptz not null default now(),
    constraint wa_media_mime_chk check (mime in ('image/png')),
    -- Meta takes images up to 5 MB
    constraint wa_media_size_chk check (octet_length(bytes) between 1 and 5242880)
);
create index wa_media_created_idx on wa_media (created_at);

alter table wa_outbox drop constraint wa_outbox_kind_chk;
alter table wa_outbox add constraint wa_outbox_kind_chk
    check (kind in ('text', 'interactive', 'template', 'image'));
