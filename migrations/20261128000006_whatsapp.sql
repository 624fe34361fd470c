-- WhatsApp gateway: the durable inbox (exactly-once ingest), dead letters, the outbox (one reply
-- per inbound wamid) and each contact's 24-hour customer-service window.

-- One row per inbound message, unique by Meta's wamid: a duplicate delivery adds nothing.
create table wa_inbox (
    id           bigint generated always as identity primary key,
    wamid        varchar(128) not null,
    phone_nr_id  varchar(32) not null,
    -- the sender: WhatsApp id (digits) and/or business-scoped user id; sender_key orders them
    wa_id        varchar(32),
    bsuid        varchar(128),
    sender_key   varchar(128) not null,
    profile_name varchar(200),
    identity_hash varchar(128),
    msg_type     varchar(40) not null,
    -- what the person said (text body, button title, caption), if anything
    body         text,
    -- the message object exactly as Meta sent it
    payload      jsonb not null,
    sent_at      timestamptz not null,
    received_at  timestamptz not null default now(),
    -- pending → relayed (on JetStream) → done | dead
    status       varchar(10) not null default 'pending',
    relayed_at   timestamptz,
    done_at      timestamptz,
    attempts     int not null default 0,
    last_error   text,
    constraint wa_inbox_wamid_uq unique (wamid),
    constraint wa_inbox_status_chk check (status in ('pending', 'relayed', 'done', 'dead'))
);

-- The relay's work list stays small: only rows not yet handed to JetStream.
create index wa_inbox_unrelayed_idx on wa_inbox (id) where relayed_at is null;
create index wa_inbox_sender_idx on wa_inbox (sender_key, id);

-- Signed deliveries that could not be understood: kept raw so nothing is lost.
create table wa_dead_letter (
    id          bigint generated always as identity primary key,
    source      varchar(20) not null,
    reason      text not null,
    body        bytea not null,
    ref         varchar(128),
    created_at  timestamptz not null default now(),
    constraint wa_dead_letter_source_chk check (source in ('webhook', 'consumer'))
);

-- Every message the hub sends. inbound_wamid makes "at most one reply per inbound message" a
-- database fact rather than a hope.
create table wa_outbox (
    id            bigint generated always as identity primary key,
    uuid          uuid not null default gen_random_uuid() unique,
    inbound_wamid varchar(128),
    -- a long reply is split into parts; each part is its own row
    part_no       int not null default 1,
    wa_id         varchar(32),
    bsuid         varchar(128),
    kind          varchar(12) not null,
    payload       jsonb not null,
    -- pending → sending → sent → delivered → read, or failed; unknown = crashed mid-send
    status        varchar(10) not null default 'pending',
    attempts      int not null default 0,
    next_try_at   timestamptz not null default now(),
    lease_until   timestamptz,
    wamid         varchar(128),
    error_code    int,
    error_text    text,
    created_at    timestamptz not null default now(),
    sent_at       timestamptz,
    delivered_at  timestamptz,
    read_at       timestamptz,
    failed_at     timestamptz,
    updated_at    timestamptz not null default now(),
    constraint wa_outbox_reply_uq unique (inbound_wamid, part_no),
    constraint wa_outbox_wamid_uq unique (wamid),
    constraint wa_outbox_kind_chk check (kind in ('text', 'interactive', 'template')),
    constraint wa_outbox_status_chk check (
        status in ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'unknown')),
    constraint wa_outbox_to_chk check (wa_id is not null or bsuid is not null)
);

create index wa_outbox_due_idx on wa_outbox (next_try_at) where status = 'pending';
create index wa_outbox_lease_idx on wa_outbox (lease_until) where status = 'sending';
-- The sender's "no earlier unsent row to the same recipient" check.
create index wa_outbox_open_to_idx on wa_outbox ((coalesce(wa_id, bsuid)), id)
    where status in ('pending', 'sending');

create trigger set_updated_at
    before update on wa_outbox
    for each row
    execute function trigger_set_timestamp();

-- The customer-service window: free-form messages only within 24 hours of the user's last message.
create table wa_contact (
    id           bigint generated always as identity primary key,
    sender_key   varchar(128) not null unique,
    wa_id        varchar(32),
    bsuid        varchar(128),
    profile_name varchar(200),
    last_in_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

create trigger set_updated_at
    before update on wa_contact
    for each row
    execute function trigger_set_timestamp();
