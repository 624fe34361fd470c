-- Approvals from the chat (src/executive/approvals.rs): a director approves a PO in "Pending
-- Director" or a sales order in "Pending" from WhatsApp.

-- What a user started in the chat and must still finish: tap "Ya, setujui" (confirm), type the
-- step-up code mailed to them (code), or write the reason of a rejection (reason). One per user;
-- a newer one replaces it; it expires.
create table wa_approval_step (
    user_id     bigint primary key references adm_user (id),
    entity_type varchar(2) not null,
    entity_id   bigint not null,
    action      varchar(10) not null,
    stage       varchar(10) not null,
    -- the step-up code (stage 'code')
    otp_id      bigint references wa_otp (id),
    expires_at  timestamptz not null,
    created_at  timestamptz not null default now(),
    constraint wa_approval_step_type_chk check (entity_type in ('PO', 'SO')),
    constraint wa_approval_step_action_chk check (action in ('approve', 'reject')),
    constraint wa_approval_step_stage_chk check (stage in ('confirm', 'code', 'reason')),
    constraint wa_approval_step_code_chk check ((stage = 'code') = (otp_id is not null))
);

-- Each approval message's reply, by the inbound message's wamid: a message processed twice (a
-- redelivery, two instances at once) gets the same reply and changes nothing a second time. Kept
-- a day.
create table wa_approval_turn (
    wamid      text primary key,
    user_id    bigint not null references adm_user (id),
    reply      jsonb not null,
    created_at timestamptz not null default now()
);

create index wa_approval_turn_created_idx on wa_approval_turn (created_at);

-- One-time codes now serve two purposes: confirming the WhatsApp device (the gate) and stepping
-- up before an approval. Each is checked only against its own purpose's codes; `subject` names
-- what an approval code approves, for its mail.
alter table wa_otp add column purpose varchar(10) not null default 'device';
alter table wa_otp add column subject varchar(120);
alter table wa_otp add constraint wa_otp_purpose_chk check (purpose in ('device', 'approval'));
