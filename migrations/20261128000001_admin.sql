-- Administrator module (blueprint 1.7): users, roles, permissions, menus, sessions, audit log.
-- adm_user / adm_role supersede the m_user / m_role of blueprint 1.1 (those are not created).

-- The one shared trigger function that keeps updated_at honest (blueprint 1.6 E).
create or replace function trigger_set_timestamp()
returns trigger
language plpgsql
as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

-- adm_role is created before adm_user; its audit FKs to adm_user are added below.
create table adm_role (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    code        varchar(30) not null unique,
    name        varchar(100) not null,
    description varchar(255),
    level       int not null default 50,
    is_system   boolean not null default false,
    created_at  timestamptz not null default now(),
    created_by  bigint,
    updated_at  timestamptz not null default now(),
    updated_by  bigint,
    deleted_at  timestamptz,
    deleted_by  bigint,
    -- role codes are referenced from code; keep them machine friendly
    constraint adm_role_code_chk check (code ~ '^[A-Z][A-Z0-9_]*$'),
    -- 1 = highest authority, 99 = lowest
    constraint adm_role_level_chk check (level between 1 and 99)
);

create table adm_user (
    id                  bigint generated always as identity primary key,
    uuid                uuid not null default gen_random_uuid() unique,
    username            varchar(50) not null,
    email               varchar(255),
    full_name           varchar(100) not null,
    -- WhatsApp identity: E.164 phone and Meta's business-scoped user id
    phone               varchar(16),
    bsuid               varchar(64),
    password_hash       varchar(255),
    role_id             bigint not null references adm_role (id),
    -- FK to m_emp is added by the masters migration (m_emp does not exist yet)
    emp_id              bigint,
    lang                varchar(2) not null default 'id',
    is_active           boolean not null default true,
    failed_login_count  int not null default 0,
    locked_until        timestamptz,
    last_login          timestamptz,
    password_changed_at timestamptz,
    created_at          timestamptz not null default now(),
    created_by          bigint references adm_user (id),
    updated_at          timestamptz not null default now(),
    updated_by          bigint references adm_user (id),
    deleted_at          timestamptz,
    deleted_by          bigint references adm_user (id),
    -- usernames are stored lower-case so a plain unique index is case-insensitive
    constraint adm_user_username_chk check (username ~ '^[a-z0-9][a-z0-9._-]{1,49}$'),
    constraint adm_user_email_chk check (email is null or email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    constraint adm_user_phone_chk check (phone is null or phone ~ '^\+[1-9][0-9]{7,14}$'),
    constraint adm_user_bsuid_chk check (bsuid is null or length(bsuid) > 0),
    constraint adm_user_lang_chk check (lang in ('id', 'en')),
    constraint adm_user_failed_chk check (failed_login_count >= 0)
);

-- Identities are unique among live users only, so a soft-deleted user frees them.
create unique index adm_user_username_live_uq on adm_user (username) where deleted_at is null;
create unique index adm_user_email_live_uq on adm_user (lower(email)) where deleted_at is null;
create unique index adm_user_phone_live_uq on adm_user (phone) where deleted_at is null;
create unique index adm_user_bsuid_live_uq on adm_user (bsuid) where deleted_at is null;
create index adm_user_role_idx on adm_user (role_id) where deleted_at is null;

alter table adm_role
    add constraint adm_role_created_by_fkey foreign key (created_by) references adm_user (id),
    add constraint adm_role_updated_by_fkey foreign key (updated_by) references adm_user (id),
    add constraint adm_role_deleted_by_fkey foreign key (deleted_by) references adm_user (id);

-- Static catalogue, seeded by migration; code = module || '.' || action (e.g. ADMIN.USER.CREATE).
create table adm_permission (
    id          bigint generated always as identity primary key,
    code        varchar(50) not null unique,
    module      varchar(20) not null,
    action      varchar(30) not null,
    name        varchar(100) not null,
    description varchar(255),
    created_at  timestamptz not null default now(),
    constraint adm_permission_code_chk check (code ~ '^[A-Z][A-Z_]*(\.[A-Z][A-Z_]*)+$'),
    constraint adm_permission_parts_chk check (code = module || '.' || action)
);

create table adm_role_permission (
    id            bigint generated always as identity primary key,
    role_id       bigint not null references adm_role (id) on delete cascade,
    permission_id bigint not null references adm_permission (id) on delete cascade,
    created_at    timestamptz not null default now(),
    created_by    bigint references adm_user (id),
    constraint adm_role_permission_uq unique (role_id, permission_id)
);

create index adm_role_permission_perm_idx on adm_role_permission (permission_id);

create table adm_menu (
    id              bigint generated always as identity primary key,
    code            varchar(50) not null unique,
    name            varchar(100) not null,
    icon            varchar(50),
    path            varchar(200),
    parent_id       bigint references adm_menu (id) on delete cascade,
    sort_order      int not null default 0,
    -- null = visible to everyone who can log in (or a pure group node)
    permission_code varchar(50) references adm_permission (code) on update cascade,
    is_active       boolean not null default true,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint adm_menu_parent_chk check (parent_id is null or parent_id <> id)
);

create index adm_menu_parent_idx on adm_menu (parent_id, sort_order);

create table adm_role_menu (
    id         bigint generated always as identity primary key,
    role_id    bigint not null references adm_role (id) on delete cascade,
    menu_id    bigint not null references adm_menu (id) on delete cascade,
    created_at timestamptz not null default now(),
    constraint adm_role_menu_uq unique (role_id, menu_id)
);

create index adm_role_menu_menu_idx on adm_role_menu (menu_id);

-- One row per login; refresh tokens rotate within a family, reuse revokes the family.
create table adm_session (
    id               bigint generated always as identity primary key,
    uuid             uuid not null default gen_random_uuid() unique,
    user_id          bigint not null references adm_user (id) on delete cascade,
    family_id        uuid not null default gen_random_uuid(),
    token_hash       varchar(128),
    refresh_hash     varchar(128) unique,
    ip_address       varchar(45),
    user_agent       varchar(512),
    login_at         timestamptz not null default now(),
    expires_at       timestamptz not null,
    last_activity_at timestamptz,
    is_revoked       boolean not null default false,
    revoked_at       timestamptz,
    revoke_reason    varchar(30),
    constraint adm_session_exp_chk check (expires_at > login_at)
);

create index adm_session_user_idx on adm_session (user_id, login_at) where not is_revoked;
create index adm_session_family_idx on adm_session (family_id);
create index adm_session_token_idx on adm_session (token_hash) where token_hash is not null;
create index adm_session_expires_idx on adm_session (expires_at) where not is_revoked;

-- Immutable audit trail: no updated_at; rows survive a (hard) delete of their user.
create table log_audit (
    id          bigint generated always as identity primary key,
    user_id     bigint references adm_user (id) on delete set null,
    action      varchar(30) not null,
    entity_type varchar(50),
    entity_id   bigint,
    entity_uuid uuid,
    old_value   jsonb,
    new_value   jsonb,
    ip_address  varchar(45),
    created_at  timestamptz not null default now(),
    -- CREATE/UPDATE/DELETE/LOGIN/LOGOUT/EXPORT/APPROVE/... upper-case verbs
    constraint log_audit_action_chk check (action ~ '^[A-Z][A-Z0-9_.]*$')
);

create index log_audit_created_idx on log_audit (created_at);
create index log_audit_user_idx on log_audit (user_id, created_at);
create index log_audit_entity_idx on log_audit (entity_type, entity_id);

create trigger set_updated_at before update on adm_role
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on adm_user
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on adm_menu
    for each row execute function trigger_set_timestamp();
