-- Admin sign-in: a second factor by WhatsApp or email, the password policy's history and forced
-- changes, sessions that may only change the password.

-- Which roles must give a one-time code after their password, and whether a login from an address
-- that completed a sign-in to the account recently may skip it. Configurable through the roles API.
alter table adm_role add column mfa_required boolean not null default false;
alter table adm_role add column mfa_remember_address boolean not null default false;
update adm_role set mfa_required = true, mfa_remember_address = (code <> 'SYSADMIN')
where code in ('SYSADMIN', 'DIRECTOR');

-- Set by an admin's reset: the next login may only change the password.
alter table adm_user add column must_change_password boolean not null default false;

-- The password hashes a user has had, newest last: the last auth.password_history of them cannot
-- be chosen again.
create table adm_password_history (
    id            bigint generated always as identity primary key,
    user_id       bigint not null references adm_user (id),
    password_hash varchar(255) not null,
    created_at    timestamptz not null default now()
);
create index adm_password_history_user_idx on adm_password_history (user_id, id);
insert into adm_password_history (user_id, password_hash, created_at)
select id, password_hash, coalesce(password_changed_at, created_at)
from adm_user where password_hash is not null;

-- A session that may only change its password (an expired or reset password): 'password'.
alter table adm_session add column scope varchar(10) not null default 'full';
alter table adm_session add constraint adm_session_scope_chk check (scope in ('full', 'password'));

-- One login waiting for its second factor. Only a keyed hash of the code is stored; an email
-- challenge has none until the mailer draws its code (it draws a fresh one on each try). A
-- WhatsApp challenge's code travels in an outbox row of purpose 'login', whose text is blanked
-- once it is sent, withdrawn or failed; a failed one falls back to email.
create table adm_login_challenge (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    user_id     bigint not null references adm_user (id),
    channel     varchar(10) not null,
    code_hash   varchar(64),
    outbox_id   bigint,
    ip_address  varchar(45),
    user_agent  varchar(512),
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    sent_at     timestamptz,
    send_tries  int not null default 0,
    next_try_at timestamptz not null default now(),
    last_error  text,
    attempts    int not null default 0,
    consumed_at timestamptz,
    voided_at   timestamptz,
    constraint adm_login_challenge_channel_chk check (channel in ('whatsapp', 'email'))
);
create index adm_login_challenge_user_idx on adm_login_challenge (user_id, created_at);
create index adm_login_challenge_due_idx on adm_login_challenge (next_try_at)
    where consumed_at is null and voided_at is null;

alter table wa_outbox drop constraint wa_outbox_purpose_chk;
alter table wa_outbox add constraint wa_outbox_purpose_chk
    check (purpose in ('answer', 'gate', 'alert', 'login'));
