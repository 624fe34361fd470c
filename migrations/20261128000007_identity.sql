-- Who may chat: device trust by email OTP, held messages, refusals of unknown senders.

-- An admin's "revoke WhatsApp device": any trust confirmed before this moment is void.
alter table adm_user add column if not exists wa_revoked_at timestamptz;

-- Messages of a sender who has not confirmed the device yet wait as 'held'.
alter table wa_inbox drop constraint wa_inbox_status_chk;
alter table wa_inbox add constraint wa_inbox_status_chk
    check (status in ('pending', 'relayed', 'held', 'done', 'dead'));
create index wa_inbox_held_idx on wa_inbox (sender_key, id) where status = 'held';

-- The device a user confirmed by email OTP, and why it must be confirmed again.
create table wa_trust (
    user_id       bigint primary key references adm_user (id),
    wa_id         varchar(32),
    bsuid         varchar(128),
    identity_hash varchar(128),
    -- null = not (or no longer) trusted
    confirmed_at  timestamptz,
    reason        varchar(30) not null default 'first_contact',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create trigger set_updated_at
    before update on wa_trust
    for each row
    execute function trigger_set_timestamp();

-- One-time codes. Only a keyed hash of the code is stored; a row with sent_at null is a code
-- whose mail could not be sent yet (the mailer retries with a fresh code).
create table wa_otp (
    id          bigint generated always as identity primary key,
    user_id     bigint not null references adm_user (id),
    code_hash   varchar(64) not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    sent_at     timestamptz,
    send_tries  int not null default 0,
    next_try_at timestamptz not null default now(),
    last_error  text,
    attempts    int not null default 0,
    consumed_at timestamptz,
    voided_at   timestamptz
);

create index wa_otp_user_idx on wa_otp (user_id, created_at);
create index wa_otp_unsent_idx on wa_otp (next_try_at) where sent_at is null and voided_at is null;

-- When each unknown sender was last refused: one refusal per 24 hours at most.
create table wa_refusal (
    sender_key varchar(128) primary key,
    refused_at timestamptz not null
);

-- A held message gets two replies over its life: the gate's request for the code, later the
-- answer. Each is still at most one: unique per (inbound wamid, purpose, part).
alter table wa_outbox add column purpose varchar(10) not null default 'answer';
alter table wa_outbox add constraint wa_outbox_purpose_chk check (purpose in ('answer', 'gate'));
alter table wa_outbox drop constraint wa_outbox_reply_uq;
alter table wa_outbox add constraint wa_outbox_reply_uq unique (inbound_wamid, purpose, part_no);
