-- The morning digest (src/executive/digest.rs): a user's own choice of time, or off. No row =
-- the role's default (digest.default_roles at digest.default_time). The digest itself travels as
-- an outbox row of purpose 'digest', written once per user and day (its key, in inbound_wamid,
-- is 'digest:<user uuid>:<day>').
create table wa_digest_pref (
    user_id    bigint primary key references adm_user (id),
    -- local time (app.timezone); null = off
    send_at    time,
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id)
);

alter table wa_outbox drop constraint wa_outbox_purpose_chk;
alter table wa_outbox add constraint wa_outbox_purpose_chk
    check (purpose in ('answer', 'gate', 'alert', 'login', 'digest'));
